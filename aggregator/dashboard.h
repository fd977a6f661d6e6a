/*
 * dashboard.h -- the dashboard's files (aggregator/web, plus uPlot from npm), embedded at build
 * time by cmake/EmbedDashboard.cmake (docs/dashboard.md). The aggregator hands the table to its
 * API (sn_api_config.assets); nothing is read from disk or the network at run time.
 */
#ifndef SN_DASHBOARD_H
#define SN_DASHBOARD_H

#include "api.h"

#include <stddef.h>

/* The asset table ("/", "/index.html", "/app.js", "/style.css", "/uPlot.iife.min.js",
 * "/uPlot.min.css"); *n gets its length. Static storage. */
const sn_api_asset *sn_dashboard_assets(size_t *n);

#endif
