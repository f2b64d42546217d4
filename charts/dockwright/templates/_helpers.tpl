{{/*
Names and labels shared by every template. Object names are the full name
(release name, plus the chart name unless the release name contains it), cut to 63 characters.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "dockwright.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: fullnameOverride, else release name (+ chart name when not already in it). */}}
{{- define "dockwright.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "dockwright.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the agent pods (never change them after install: selectors are immutable). */}}
{{- define "dockwright.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dockwright.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels on every object. */}}
{{- define "dockwright.labels" -}}
helm.sh/chart: {{ include "dockwright.chart" . }}
{{ include "dockwright.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: agent
app.kubernetes.io/part-of: dockwright
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the agent runs as. */}}
{{- define "dockwright.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dockwright.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The agent's image: repository:tag, the tag defaulting to the appVersion. */}}
{{- define "dockwright.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the policy ConfigMap is mounted, and the file the agent reads. */}}
{{- define "dockwright.policyDir" -}}
/etc/dockwright/policy
{{- end }}
{{- define "dockwright.policyFile" -}}
{{ include "dockwright.policyDir" . }}/policy.yaml
{{- end }}

{{/* The directory holding the Docker socket; never the root directory. */}}
{{- define "dockwright.socketDir" -}}
{{- $dir := dir .Values.docker.socketPath }}
{{- if or (eq $dir "/") (eq $dir ".") }}
{{- fail (printf "docker.socketPath %q: the socket must be in a directory below / when docker.mountSocketDirectory is true" .Values.docker.socketPath) }}
{{- end }}
{{- $dir }}
{{- end }}

{{/* Where the socket's directory is mounted in the pod (docker.mountSocketDirectory). */}}
{{- define "dockwright.socketDirInPod" -}}
/run/dockwright/docker-host
{{- end }}

{{/* The socket's path inside the pod, for DOCKER_HOST. */}}
{{- define "dockwright.socketInPod" -}}
{{- if .Values.docker.mountSocketDirectory }}
{{- printf "%s/%s" (include "dockwright.socketDirInPod" .) (base .Values.docker.socketPath) }}
{{- else }}
{{- .Values.docker.socketPath }}
{{- end }}
{{- end }}

{{/* The placement controller's object names (Deployment, ServiceAccount, roles, Lease). */}}
{{- define "dockwright.controllerName" -}}
{{- printf "%s-controller" (include "dockwright.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the controller pods: a name of their own, so that neither the agents'
DaemonSet nor their metrics Service (both select dockwright.selectorLabels) ever match them. */}}
{{- define "dockwright.controllerSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-controller" (include "dockwright.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels on the controller's objects. */}}
{{- define "dockwright.controllerLabels" -}}
helm.sh/chart: {{ include "dockwright.chart" . }}
{{ include "dockwright.controllerSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: dockwright
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the controller runs as. */}}
{{- define "dockwright.controllerServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dockwright.controllerName" .) .Values.controller.serviceAccountName }}
{{- else }}
{{- required "controller.serviceAccountName is required when serviceAccount.create is false" .Values.controller.serviceAccountName }}
{{- end }}
{{- end }}

{{/* Label on both metrics Services (agents, controller): what the ServiceMonitor selects. */}}
{{- define "dockwright.metricsServiceLabel" -}}
dockwright.dev/metrics: "true"
{{- end }}
