{{/* Names and labels. */}}
{{- define "encproxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "encproxy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "encproxy.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "encproxy.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "encproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "encproxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "encproxy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "encproxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{- define "encproxy.mode" -}}
{{- if not (has .Values.mode (list "gateway" "sidecar")) }}
{{- fail (printf "mode must be gateway or sidecar, not %q" (toString .Values.mode)) }}
{{- end }}
{{- .Values.mode }}
{{- end }}

{{- define "encproxy.secretName" -}}
{{- default (printf "%s-secrets" (include "encproxy.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "encproxy.keyringSecretName" -}}
{{- default (printf "%s-keyring" (include "encproxy.fullname" .)) .Values.keyring.existingSecret }}
{{- end }}

{{- define "encproxy.localKeys" -}}
{{- if eq (toString (dig "keys" "provider" "" .Values.config)) "local" }}true{{ end }}
{{- end }}

{{- define "encproxy.scheme" -}}
{{- if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* Where the ConfigMap is mounted; --config points at encproxy.ini in it. */}}
{{- define "encproxy.configDir" -}}/etc/encproxy/conf{{- end }}
{{- define "encproxy.tlsDir" -}}/etc/encproxy/tls{{- end }}

{{/* The memory request: as given, or workers x measured per-worker RSS + base. */}}
{{- define "encproxy.memoryRequest" -}}
{{- if .Values.resources.requests.memory }}
{{- .Values.resources.requests.memory }}
{{- else }}
{{- $workers := int (dig "server" "workers" 1 .Values.config) }}
{{- printf "%dMi" (add (mul $workers (int .Values.memoryPerWorkerMiB)) (int .Values.memoryBaseMiB)) }}
{{- end }}
{{- end }}

{{/*
The ini. Sections in a fixed order, options sorted by name (range over a map sorts). The
chart owns [server] listen, certfile and keyfile, and [keys] keyring for a local keyring, so
that ports, probes and mounts cannot disagree with it.
*/}}
{{- define "encproxy.ini" -}}
{{- $config := deepCopy .Values.config }}
{{- $server := default dict (get $config "server") }}
{{- range $owned := list "listen" "certfile" "keyfile" }}
{{- if hasKey $server $owned }}
{{- fail (printf "config.server.%s is set by the chart (port, tls)" $owned) }}
{{- end }}
{{- end }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.port)) }}
{{- if .Values.tls.enabled }}
{{- $_ := set $server "certfile" (printf "%s/tls.crt" (include "encproxy.tlsDir" .)) }}
{{- $_ := set $server "keyfile" (printf "%s/tls.key" (include "encproxy.tlsDir" .)) }}
{{- end }}
{{- $_ := set $config "server" $server }}
{{- if include "encproxy.localKeys" . }}
{{- $_ := set $config.keys "keyring" (printf "%s/keys" .Values.keyring.mountPath) }}
{{- end }}
{{- if not (hasKey $config "credentials") }}
{{- $_ := set $config "credentials" dict }}
{{- end }}
{{- $order := list "server" "auth" "credentials" "backend_credentials" "access" "access_kms_keys" "backend" "encryption" "keys" }}
{{- range $section := $order }}
{{- if hasKey $config $section }}
{{- $options := get $config $section }}
{{- if or $options (eq $section "credentials") }}
[{{ $section }}]
{{- range $option, $value := $options }}
{{ $option }} = {{ include "encproxy.iniValue" $value }}
{{- end }}
{{ end }}
{{- end }}
{{- end }}
{{- range $section, $options := $config }}
{{- if and $options (not (has $section $order)) }}
[{{ $section }}]
{{- range $option, $value := $options }}
{{ $option }} = {{ include "encproxy.iniValue" $value }}
{{- end }}
{{ end }}
{{- end }}
{{- end }}

{{/* One ini value. Numbers reach templates as float64: 5368709120 must not print as
5.36870912e+09. */}}
{{- define "encproxy.iniValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/* The encproxy container: the same in both modes. */}}
{{- define "encproxy.container" -}}
name: encproxy
image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: [serve, --config, {{ include "encproxy.configDir" . }}/encproxy.ini]
ports:
  - {name: s3, containerPort: {{ int .Values.port }}, protocol: TCP}
envFrom:
  - secretRef: {name: {{ include "encproxy.secretName" . }}}
volumeMounts:
  # A directory, not a subPath: ConfigMap edits reach it (then send SIGHUP).
  - {name: config, mountPath: {{ include "encproxy.configDir" . }}, readOnly: true}
  {{- if .Values.tls.enabled }}
  - {name: tls, mountPath: {{ include "encproxy.tlsDir" . }}, readOnly: true}
  {{- end }}
  {{- if .Values.secrets.filesMountPath }}
  - {name: secret-files, mountPath: {{ .Values.secrets.filesMountPath }}, readOnly: true}
  {{- end }}
  {{- if include "encproxy.localKeys" . }}
  - {name: keyring, mountPath: {{ .Values.keyring.mountPath }}, readOnly: true}
  {{- end }}
  - {name: tmp, mountPath: /tmp}
startupProbe:
  httpGet: {path: /_encproxy/health, port: s3, scheme: {{ include "encproxy.scheme" . }}}
  {{- toYaml .Values.probes.startup | nindent 2 }}
livenessProbe:
  httpGet: {path: /_encproxy/health, port: s3, scheme: {{ include "encproxy.scheme" . }}}
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet: {path: /_encproxy/ready, port: s3, scheme: {{ include "encproxy.scheme" . }}}
  {{- toYaml .Values.probes.readiness | nindent 2 }}
lifecycle:
  # Let endpoints and load balancers stop sending before SIGTERM.
  preStop:
    exec: {command: [sleep, {{ .Values.preStopSleepSeconds | toString | quote }}]}
resources:
  requests:
    cpu: {{ .Values.resources.requests.cpu | quote }}
    memory: {{ include "encproxy.memoryRequest" . }}
  {{- with .Values.resources.limits }}
  limits:
    {{- toYaml . | nindent 4 }}
  {{- end }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end }}

{{/* The keyring copy (local keys only): Secret volumes are symlinks, which the keyring refuses. */}}
{{- define "encproxy.keyringInit" -}}
name: keyring
image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
command:
  - sh
  - -c
  - install -d -m 0700 /keyring/keys && install -m 0600 /secret-keyring/*.key /keyring/keys/
volumeMounts:
  - {name: keyring-secret, mountPath: /secret-keyring, readOnly: true}
  - {name: keyring, mountPath: /keyring}
resources:
  requests: {cpu: 10m, memory: 16Mi}
  limits: {memory: 64Mi}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end }}

{{/* The pod's volumes for the encproxy container. */}}
{{- define "encproxy.volumes" -}}
- name: config
  configMap: {name: {{ include "encproxy.fullname" . }}-config}
{{- if .Values.tls.enabled }}
- name: tls
  secret: {secretName: {{ required "tls.secretName is required with tls.enabled" .Values.tls.secretName }}, defaultMode: 0444}
{{- end }}
{{- if .Values.secrets.filesMountPath }}
- name: secret-files
  # Secret files are root's: encproxy (uid 10001, alone in its container) must read them.
  secret: {secretName: {{ include "encproxy.secretName" . }}, defaultMode: 0444}
{{- end }}
{{- if include "encproxy.localKeys" . }}
- name: keyring-secret
  # Readable by the init container's user; it copies the files with mode 0600.
  secret: {secretName: {{ include "encproxy.keyringSecretName" . }}, defaultMode: 0444}
- name: keyring
  emptyDir: {medium: Memory, sizeLimit: 1Mi}
{{- end }}
- name: tmp
  emptyDir: {medium: Memory, sizeLimit: {{ .Values.tmpSizeLimit }}}
{{- end }}

{{/* Pod metadata shared by both modes: a changed ini or Secret rolls the pods on upgrade. */}}
{{- define "encproxy.podAnnotations" -}}
checksum/config: {{ include "encproxy.ini" . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secrets: {{ toJson .Values.secrets.env | sha256sum }}
{{- end }}
prometheus.io/scrape: "true"
prometheus.io/scheme: {{ include "encproxy.scheme" . | lower }}
prometheus.io/port: {{ .Values.port | toString | quote }}
prometheus.io/path: /_encproxy/metrics
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
