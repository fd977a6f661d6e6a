// The runtime stage of each deploy/docker/*.Dockerfile installs every shared library its program
// links: the program's DT_NEEDED entries are resolved (ldd) to files and the files to Debian
// packages (dpkg -S) on this Debian 12 machine, and each package must be in the stage's
// `apt-get install` list (or be part of debian:12-slim itself). Programs not built are skipped.
// A control checks that a list without one of the sidecar's packages (libuv1; libgrpc29 when
// it is linked against the shared gRPC) is caught.
//   node images_test.mjs --root REPO --program NAME=BIN [--program NAME=BIN ...]
import { readFileSync, realpathSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { check, finish } from './lib.mjs';

const args = process.argv.slice(2);
const root = args[args.indexOf('--root') + 1];
const programs = [];
for (let i = 0; i < args.length; i++) {
    if (args[i] === '--program') {
        const [name, bin] = args[i + 1].split('=');
        programs.push({ name, bin });
    }
}
// Essential packages of debian:12-slim (libc, libgcc, libstdc++ come with apt and dpkg).
const IN_BASE = new Set(['libc6', 'libgcc-s1', 'libstdc++6', 'zlib1g']);

/** Debian packages that own the libraries `bin` names in DT_NEEDED. */
function neededPackages(bin) {
    const dyn = execFileSync('readelf', ['-d', bin], { encoding: 'utf8' });
    // The dynamic loader (ld-linux*, part of libc6) may be named too -- a static libgcc's unwinder
    // calls its _dl_find_object -- and ldd prints it without "=>": it needs no package of its own.
    const needed = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1])
        .filter((lib) => !/^ld-linux/.test(lib));
    const ldd = execFileSync('ldd', [bin], { encoding: 'utf8' });
    const where = Object.fromEntries([...ldd.matchAll(/^\s*(\S+) => (\S+)/gm)].map((m) => [m[1], m[2]]));
    // Debian 12 is usr-merged: dpkg may know a file under /lib or /usr/lib. One dpkg -S for all.
    const spellings = new Map();
    for (const lib of needed) {
        check(where[lib], `${bin}: ${lib} not found by ldd`);
        if (!where[lib]) continue;
        const real = realpathSync(where[lib]);
        spellings.set(lib, [...new Set([real, real.replace(/^\/usr\/lib\//, '/lib/'), where[lib],
            where[lib].replace(/^\/lib\//, '/usr/lib/')])]);
    }
    const all = [...spellings.values()].flat();
    const r = spawnSync('dpkg', ['-S', ...all], { encoding: 'utf8' });
    const owner = new Map();
    for (const line of r.stdout.split('\n')) {
        const m = line.match(/^([^:,\s]+)(?::[^:\s]+)?: (\/.*)$/);
        if (m) owner.set(m[2], m[1]);
    }
    const pkgs = new Map();
    for (const [lib, paths] of spellings) {
        const p = paths.map((x) => owner.get(x)).find(Boolean);
        check(p, `${bin}: no Debian package owns ${lib} (${paths[0]})`);
        if (p) pkgs.set(lib, p);
    }
    return pkgs;
}

/** Packages installed by the runtime stage (the last FROM) of a Dockerfile. */
function runtimePackages(dockerfile) {
    const text = readFileSync(dockerfile, 'utf8').replace(/\\\n/g, ' ');
    const stages = text.split(/^FROM /m);
    const runtime = stages[stages.length - 1];
    const install = runtime.match(/apt-get install ([^&\n]*)/);
    check(install, `${dockerfile}: runtime stage has no apt-get install`);
    return new Set((install?.[1] ?? '').split(/\s+/).filter((w) => w && !w.startsWith('-')));
}

// Sanitizer runtimes (an ASan build of the programs) are never part of an image.
const SANITIZER = /^lib(asan|ubsan|tsan|lsan)\d+$/;

/**
 * The listed packages and everything they depend on (installed packages' Depends, recursively):
 * a library pulled in by a listed one (libgrpc29 brings abseil, re2, c-ares, OpenSSL) is in the
 * image too. Builds without --as-needed name such libraries directly.
 */
const dependsCache = new Map();
function dependsOf(p) {
    if (!dependsCache.has(p)) {
        let deps = '';
        try {
            deps = execFileSync('dpkg-query', ['-W', '-f=${Depends}', p], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
        } catch {
            /* not installed here: its own name still counts */
        }
        dependsCache.set(p, deps.split(',').map((alt) => alt.trim().split(/[\s|(:]/)[0]).filter(Boolean));
    }
    return dependsCache.get(p);
}

function closure(listed) {
    const seen = new Set(listed);
    const todo = [...listed];
    while (todo.length > 0) {
        for (const name of dependsOf(todo.pop())) {
            if (!seen.has(name)) {
                seen.add(name);
                todo.push(name);
            }
        }
    }
    return seen;
}

function missing(pkgs, listed) {
    const covered = closure(listed);
    return [...pkgs].filter(([, p]) => !covered.has(p) && !IN_BASE.has(p) && !SANITIZER.test(p)).map(([lib, p]) => `${p} (${lib})`);
}

let checkedPrograms = 0;
for (const { name, bin } of programs) {
    const dockerfile = join(root, 'deploy', 'docker', `${name}.Dockerfile`);
    check(existsSync(dockerfile), `${dockerfile} missing`);
    if (!existsSync(bin)) {
        console.log(`${name}: ${bin} not built, skipped`);
        continue;
    }
    checkedPrograms++;
    const pkgs = neededPackages(bin);
    check(pkgs.size >= 3, `${name}: ${pkgs.size} libraries resolved`);
    const listed = runtimePackages(dockerfile);
    const miss = missing(pkgs, listed);
    check(miss.length === 0, `${name}.Dockerfile: runtime stage lacks ${miss.join(', ')}`);
    console.log(`${name}: links ${[...new Set(pkgs.values())].sort().join(' ')}`);
    if (name === 'sidecar') {
        // Control: the same check on a list without a package the program links (gRPC when it is
        // linked against the shared libraries; the static build links libuv) must report it.
        const linked = new Set(pkgs.values());
        const probe = linked.has('libgrpc29') ? 'libgrpc29' : 'libuv1';
        check(linked.has(probe), `control: the sidecar links ${probe}`);
        const without = new Set([...listed].filter((p) => p !== probe));
        check(missing(pkgs, without).some((m) => m.startsWith(probe)), `control: a missing ${probe} is caught`);
    }
}
check(checkedPrograms === programs.length && checkedPrograms >= 2, `${checkedPrograms} of ${programs.length} programs checked`);
finish('deploy images');
