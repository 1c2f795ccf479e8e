{{/* ---- names and labels ------------------------------------------------------------ */}}

{{- define "skuflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "skuflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 56 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "skuflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "skuflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "skuflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "skuflow.labels" -}}
helm.sh/chart: {{ include "skuflow.chart" . }}
{{ include "skuflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: skuflow
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one worker class; call with (dict "root" $ "class" "urgent"). */}}
{{- define "skuflow.workerSelectorLabels" -}}
{{ include "skuflow.selectorLabels" .root }}
app.kubernetes.io/component: {{ .class }}
{{- end -}}

{{- define "skuflow.workerLabels" -}}
{{ include "skuflow.labels" .root }}
app.kubernetes.io/component: {{ .class }}
{{- end -}}

{{- define "skuflow.workerName" -}}
{{- printf "%s-%s" (include "skuflow.fullname" .root) .class -}}
{{- end -}}

{{- define "skuflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "skuflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "skuflow.secretName" -}}
{{- if .Values.credentials.create -}}
{{- printf "%s-credentials" (include "skuflow.fullname" .) -}}
{{- else -}}
{{- required "credentials.existingSecret: name the Secret holding the credentials, or set credentials.create" .Values.credentials.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "skuflow.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* ---- the worker's settings ------------------------------------------------------- */}}

{{- define "skuflow.configDir" -}}/etc/skuflow/config{{- end -}}
{{- define "skuflow.kafkaCaPath" -}}/etc/skuflow/kafka-ca/ca.crt{{- end -}}

{{- define "skuflow.urgentGroup" -}}
{{- $dispatch := default (dict) .Values.config.dispatch -}}
{{- default (printf "%s.urgent" .Values.kafka.group) $dispatch.group -}}
{{- end -}}

{{- define "skuflow.drainTimeoutSeconds" -}}
{{- $engine := default (dict) .Values.config.engine -}}
{{- if hasKey $engine "drain_timeout_seconds" -}}{{ $engine.drain_timeout_seconds }}{{- else -}}30{{- end -}}
{{- end -}}

{{- define "skuflow.isSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}

{{- define "skuflow.isTls" -}}
{{- if hasSuffix "SSL" .Values.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}

{{/* The settings dictionary (YAML): `config` plus the keys the chart owns, which win. */}}
{{- define "skuflow.settings" -}}
{{- $v := .Values -}}
{{- $kafka := dict "bootstrap" $v.kafka.bootstrap "group" $v.kafka.group "security_protocol" $v.kafka.securityProtocol -}}
{{- if include "skuflow.isSasl" . -}}
{{- $_ := set $kafka "sasl_mechanism" $v.kafka.saslMechanism -}}
{{- end -}}
{{- if $v.kafka.tls.caSecret -}}
{{- $_ := set $kafka "ssl_cafile" (include "skuflow.kafkaCaPath" .) -}}
{{- end -}}
{{- $topics := dict "dispatch" $v.kafka.topics.dispatch.name "stock" $v.kafka.topics.stock.name "dead_letter" $v.kafka.topics.deadLetter.name "orders" $v.kafka.topics.orders.name "returns" $v.kafka.topics.returns.name "released" $v.kafka.topics.released.name -}}
{{- $owned := dict "kafka" $kafka "topics" $topics "health" (dict "port" $v.health.port) -}}
{{- if $v.database.host -}}
{{- $url := printf "postgresql://%s@%s:%v/%s" (urlquery $v.database.user) $v.database.host (int64 $v.database.port) $v.database.name -}}
{{- if $v.database.options -}}
{{- $pairs := list -}}
{{- range $key, $value := $v.database.options -}}
{{- $pairs = append $pairs (printf "%s=%s" (urlquery $key) (urlquery (toString $value))) -}}
{{- end -}}
{{- $url = printf "%s?%s" $url (join "&" $pairs) -}}
{{- end -}}
{{- $_ := set $owned "database" (dict "url" $url) -}}
{{- end -}}
{{- if $v.b1.enabled -}}
{{- $_ := set $owned "b1" (dict "url" (required "b1.url: the Service Layer base URL is required when b1.enabled" $v.b1.url) "company" $v.b1.company "user" $v.b1.user) -}}
{{- end -}}
{{- if $v.ecc.enabled -}}
{{- $_ := set $owned "ecc" (dict "url" (required "ecc.url: the ECC system's ICF base URL is required when ecc.enabled" $v.ecc.url) "client" $v.ecc.client "sid" $v.ecc.sid "user" $v.ecc.user) -}}
{{- end -}}
{{- $_ := set $owned "erp" (dict "kind" (ternary "ecc" "b1" (and $v.ecc.enabled true))) -}}
{{- if $v.spapi.enabled -}}
{{- $_ := set $owned "spapi" (dict "endpoint" $v.spapi.endpoint "lwa_endpoint" $v.spapi.lwaEndpoint) -}}
{{- end -}}
{{- if $v.skuMapCsv -}}
{{- $_ := set $owned "mappings" (dict "sku_map" (printf "%s/sku-map.csv" (include "skuflow.configDir" .))) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite (deepCopy (default (dict) $v.config)) $owned) -}}
{{- end -}}

{{/* A TOML value: strings as basic strings (JSON escapes are TOML escapes), whole numbers as
     integers (values arrive as float64), other numbers as floats, booleans. */}}
{{- define "skuflow.tomlValue" -}}
{{- if kindIs "string" . -}}
{{- toRawJson . -}}
{{- else if kindIs "bool" . -}}
{{- . -}}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) -}}
{{- if eq (float64 (int64 .)) (float64 .) -}}{{ int64 . }}{{- else -}}{{ float64 . }}{{- end -}}
{{- else -}}
{{- fail (printf "config: %v is not a TOML string, number or boolean" .) -}}
{{- end -}}
{{- end -}}

{{- define "skuflow.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toRawJson . }}{{- end -}}
{{- end -}}

{{/* One TOML table; call with (dict "path" "engine" "table" $map). Scalars, then subtables. */}}
{{- define "skuflow.tomlTable" -}}
{{- $path := .path -}}
{{- $table := .table -}}
[{{ $path }}]
{{- range $key, $value := $table }}
{{- if not (kindIs "map" $value) }}
{{ include "skuflow.tomlKey" $key }} = {{ include "skuflow.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $key, $value := $table }}
{{- if kindIs "map" $value }}

{{ include "skuflow.tomlTable" (dict "path" (printf "%s.%s" $path (include "skuflow.tomlKey" $key)) "table" $value) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "skuflow.toml" -}}
# skuflow settings rendered by the Helm chart (release {{ .Release.Name }}). No credentials:
# those come from the Secret {{ include "skuflow.secretName" . }} as environment variables.
{{- $settings := include "skuflow.settings" . | fromYaml }}
{{- range $table, $values := $settings }}

{{ include "skuflow.tomlTable" (dict "path" $table "table" $values) }}
{{- end }}
{{ end -}}

{{/* ---- credentials ----------------------------------------------------------------- */}}

{{/* Secret key -> environment variable, for what this release needs (YAML). */}}
{{- define "skuflow.secretEnv" -}}
{{- $env := dict -}}
{{- if .Values.database.host -}}
{{- $_ := set $env "database-password" "PGPASSWORD" -}}
{{- else -}}
{{- $_ := set $env "database-url" "SKUFLOW_DATABASE_URL" -}}
{{- end -}}
{{- if include "skuflow.isSasl" . -}}
{{- $_ := set $env "kafka-sasl-username" "SKUFLOW_KAFKA_SASL_USERNAME" -}}
{{- $_ := set $env "kafka-sasl-password" "SKUFLOW_KAFKA_SASL_PASSWORD" -}}
{{- end -}}
{{- if .Values.b1.enabled -}}
{{- $_ := set $env "b1-password" "SKUFLOW_B1_PASSWORD" -}}
{{- end -}}
{{- if .Values.ecc.enabled -}}
{{- $_ := set $env "ecc-password" "SKUFLOW_ECC__PASSWORD" -}}
{{- end -}}
{{- if .Values.spapi.enabled -}}
{{- $_ := set $env "lwa-client-id" "SKUFLOW_LWA_CLIENT_ID" -}}
{{- $_ := set $env "lwa-client-secret" "SKUFLOW_LWA_CLIENT_SECRET" -}}
{{- $_ := set $env "lwa-refresh-token" "SKUFLOW_LWA_REFRESH_TOKEN" -}}
{{- end -}}
{{- if .Values.otel.headersFromSecret -}}
{{- $_ := set $env "otel-exporter-otlp-headers" "OTEL_EXPORTER_OTLP_HEADERS" -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/* ---- validation (rendered once, from the ConfigMap) ------------------------------ */}}

{{- define "skuflow.validate" -}}
{{- $v := .Values -}}
{{- $drain := include "skuflow.drainTimeoutSeconds" . | float64 -}}
{{- $grace := $v.terminationGracePeriodSeconds | float64 -}}
{{- if lt $grace (addf $drain 10) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least config.engine.drain_timeout_seconds (%v) + 10: after the drain the worker commits its offsets and closes its Kafka clients, and Kubernetes sends SIGKILL when the grace period ends" $grace $drain) -}}
{{- end -}}
{{- if and $v.b1.enabled $v.ecc.enabled -}}
{{- fail "b1.enabled and ecc.enabled: the stock flow posts to one ERP; enable b1 or ecc" -}}
{{- end -}}
{{- $w := $v.workers -}}
{{- if not (or $w.urgent.enabled $w.normal.enabled $w.all.enabled) -}}
{{- fail "workers: enable workers.urgent and workers.normal (recommended) or workers.all" -}}
{{- end -}}
{{- if and $w.all.enabled (or $w.urgent.enabled $w.normal.enabled) -}}
{{- fail "workers.all runs both classes in every pod: disable workers.urgent and workers.normal, or workers.all" -}}
{{- end -}}
{{- range $class := list "urgent" "normal" "all" -}}
{{- $worker := index $w $class -}}
{{- if and $worker.enabled $worker.hpa.enabled $worker.keda.enabled -}}
{{- fail (printf "workers.%s: hpa and keda cannot both be enabled (KEDA manages its own HorizontalPodAutoscaler)" $class) -}}
{{- end -}}
{{- end -}}
{{- if and $v.kafka.tls.caSecret (not (include "skuflow.isTls" .)) -}}
{{- fail (printf "kafka.tls.caSecret is set, but kafka.securityProtocol %s does not use TLS" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if $v.credentials.create -}}
{{- $missing := list -}}
{{- range $key, $_ := include "skuflow.secretEnv" . | fromYaml -}}
{{- if not (hasKey $v.credentials.data $key) -}}
{{- $missing = append $missing $key -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "credentials.create: credentials.data lacks %s (needed by the enabled connectors)" (join ", " $missing)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Partitions a class consumes: its cap for autoscaling (pods beyond it sit idle). */}}
{{- define "skuflow.partitions" -}}
{{- $topics := .root.Values.kafka.topics -}}
{{- if eq .class "urgent" -}}{{ int64 $topics.dispatch.partitions }}
{{- else if eq .class "normal" -}}{{ max (int64 $topics.stock.partitions) (int64 $topics.orders.partitions) (int64 $topics.returns.partitions) }}
{{- else -}}{{ max (int64 $topics.dispatch.partitions) (int64 $topics.stock.partitions) (int64 $topics.orders.partitions) (int64 $topics.returns.partitions) }}
{{- end -}}
{{- end -}}
