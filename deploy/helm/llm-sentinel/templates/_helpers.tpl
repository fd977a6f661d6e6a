{{/* Prefix of every object's name: the release name unless overridden. */}}
{{- define "llm-sentinel.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "llm-sentinel.labels" -}}
app.kubernetes.io/part-of: llm-sentinel
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The Redis URL the aggregator uses, or "" for embedded state. */}}
{{- define "llm-sentinel.redisUrl" -}}
{{- if .Values.redis.externalUrl -}}
{{- .Values.redis.externalUrl -}}
{{- else if .Values.redis.enabled -}}
{{- printf "redis://%s-redis.%s.svc:6379/0" (include "llm-sentinel.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Pod security context shared by LLM-Sentinel's programs (the images run as 65532). */}}
{{- define "llm-sentinel.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context: no privileges, read-only root file system. */}}
{{- define "llm-sentinel.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
