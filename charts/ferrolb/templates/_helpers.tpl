{{/* vim: set filetype=mustache: */}}

{{/*
The chart name, or nameOverride.
*/}}
{{- define "ferrolb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A fully qualified app name: the release name when it already contains the chart name, else
`<release>-<name>`. Truncated to leave room for the `-controller` / `-speaker` suffixes within
Kubernetes' 63-character name limit.
*/}}
{{- define "ferrolb.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "ferrolb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "ferrolb.labels" -}}
helm.sh/chart: {{ include "ferrolb.chart" . }}
{{ include "ferrolb.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ferrolb
{{- end }}

{{/*
Selector labels shared by both components.
*/}}
{{- define "ferrolb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferrolb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ferrolb.controller.labels" -}}
{{ include "ferrolb.labels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "ferrolb.controller.selectorLabels" -}}
{{ include "ferrolb.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "ferrolb.speaker.labels" -}}
{{ include "ferrolb.labels" . }}
app.kubernetes.io/component: speaker
{{- end }}

{{/*
The speakers find their peers by these labels (passed as --speaker-selector), so every speaker
pod must carry them.
*/}}
{{- define "ferrolb.speaker.selectorLabels" -}}
{{ include "ferrolb.selectorLabels" . }}
app.kubernetes.io/component: speaker
{{- end }}

{{/*
The speaker selector labels as a label selector string: `k=v,k=v`.
*/}}
{{- define "ferrolb.speaker.selector" -}}
{{- $pairs := list }}
{{- range $k, $v := (include "ferrolb.speaker.selectorLabels" . | fromYaml) }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{- define "ferrolb.controller.fullname" -}}
{{ include "ferrolb.fullname" . }}-controller
{{- end }}

{{- define "ferrolb.speaker.fullname" -}}
{{ include "ferrolb.fullname" . }}-speaker
{{- end }}

{{- define "ferrolb.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (include "ferrolb.controller.fullname" .) .Values.controller.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ferrolb.speaker.serviceAccountName" -}}
{{- if .Values.speaker.serviceAccount.create }}
{{- default (include "ferrolb.speaker.fullname" .) .Values.speaker.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.speaker.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the gossip key Secret.
*/}}
{{- define "ferrolb.gossipSecretName" -}}
{{- default (printf "%s-gossip" (include "ferrolb.fullname" .)) .Values.gossip.secretName }}
{{- end }}

{{/*
An image reference from a component's image block: repository:tag, or repository@digest.
Usage: include "ferrolb.image" (dict "image" .Values.controller.image "context" $)
*/}}
{{- define "ferrolb.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .context.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/*
host:port for --metrics-addr, bracketing IPv6 hosts.
Usage: include "ferrolb.metricsAddr" .Values.controller.metrics
*/}}
{{- define "ferrolb.metricsAddr" -}}
{{- if contains ":" .bindAddress }}
{{- printf "[%s]:%d" .bindAddress (int .port) }}
{{- else }}
{{- printf "%s:%d" .bindAddress (int .port) }}
{{- end }}
{{- end }}

{{/*
The liveness and readiness probes of a component.
Usage: include "ferrolb.probes" .Values.controller
*/}}
{{- define "ferrolb.probes" -}}
{{- with .livenessProbe }}
{{- if .enabled }}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  initialDelaySeconds: {{ .initialDelaySeconds }}
  periodSeconds: {{ .periodSeconds }}
  timeoutSeconds: {{ .timeoutSeconds }}
  failureThreshold: {{ .failureThreshold }}
{{- end }}
{{- end }}
{{- with .readinessProbe }}
{{- if .enabled }}
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  initialDelaySeconds: {{ .initialDelaySeconds }}
  periodSeconds: {{ .periodSeconds }}
  timeoutSeconds: {{ .timeoutSeconds }}
  failureThreshold: {{ .failureThreshold }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels of the CRDs.
*/}}
{{- define "ferrolb.crdLabels" -}}
{{ include "ferrolb.labels" . }}
app.kubernetes.io/component: crds
{{- end }}

{{/*
The PromQL label matcher that keeps alert expressions to this release's namespace.
*/}}
{{- define "ferrolb.promNamespace" -}}
namespace="{{ .Release.Namespace }}"
{{- end }}

{{/*
Guards: values that render but cannot work.
*/}}
{{- define "ferrolb.validate" -}}
{{- if and (gt (int .Values.controller.replicas) 1) (not .Values.controller.leaderElection) }}
{{- fail "controller.leaderElection=false needs controller.replicas=1: two replicas without a leader would both write Service status and could hand out the same IP twice" }}
{{- end }}
{{- if (eq (int .Values.speaker.metrics.port) (int .Values.gossip.port)) }}
{{- fail (printf "speaker.metrics.port and gossip.port are both %d: the speaker runs on the host network and needs both ports on the node" (int .Values.gossip.port)) }}
{{- end }}
{{- if not .Values.controller.metrics.bindAddress }}
{{- fail "controller.metrics.bindAddress is empty: give an address (0.0.0.0 or :: for all); only the speaker defaults to its node's IP" }}
{{- end }}
{{- range .Values.speaker.interfaces.include }}
{{- if has . $.Values.speaker.interfaces.exclude }}
{{- fail (printf "speaker.interfaces: %q is both included and excluded" .) }}
{{- end }}
{{- end }}
{{- if and .Values.controller.podDisruptionBudget.enabled (ge (int .Values.controller.podDisruptionBudget.minAvailable) (int .Values.controller.replicas)) }}
{{- fail (printf "controller.podDisruptionBudget.minAvailable (%d) must be below controller.replicas (%d), or a node running a replica could never be drained (disable the budget for a single replica)" (int .Values.controller.podDisruptionBudget.minAvailable) (int .Values.controller.replicas)) }}
{{- end }}
{{- end }}
