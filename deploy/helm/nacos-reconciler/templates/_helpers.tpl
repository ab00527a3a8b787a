{{/* The chart's name. */}}
{{- define "nacos-reconciler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: object names and the default Lease name. */}}
{{- define "nacos-reconciler.fullname" -}}
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

{{- define "nacos-reconciler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nacos-reconciler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nacos-reconciler.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "nacos-reconciler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "nacos-reconciler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nacos-reconciler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "nacos-reconciler.leaseName" -}}
{{- default (include "nacos-reconciler.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* watchNamespaces as a list, from a list or a comma-separated string; empty entries dropped. */}}
{{- define "nacos-reconciler.watchNamespaces" -}}
{{- $raw := .Values.watchNamespaces | default list }}
{{- if kindIs "string" $raw }}{{ $raw = splitList "," $raw }}{{ end }}
{{- $out := list }}
{{- range $raw }}{{ $n := trim (toString .) }}{{ if $n }}{{ $out = append $out $n }}{{ end }}{{ end }}
{{- toJson (uniq $out) }}
{{- end }}
