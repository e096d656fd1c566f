{{/* Labels shared by every object of the release. */}}
{{- define "orderflow.labels" -}}
app.kubernetes.io/name: orderflow
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "orderflow.selector" -}}
app.kubernetes.io/name: orderflow
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/*
KAFKA_BOOTSTRAP: kafka.bootstrap, else the Strimzi bootstrap Service of kafka.clusterName on the
plain listener (9092) or, with kafka.tls.enabled, on the `tls` listener (9093).
*/}}
{{- define "orderflow.bootstrap" -}}
{{- $port := ternary 9093 9092 .Values.kafka.tls.enabled -}}
{{- .Values.kafka.bootstrap | default (printf "%s-kafka-bootstrap.%s.svc:%v" .Values.kafka.clusterName .Release.Namespace $port) -}}
{{- end }}

{{/* KAFKA_SECURITY_PROTOCOL for kafka.tls / kafka.sasl (librdkafka's security.protocol). */}}
{{- define "orderflow.kafkaSecurityProtocol" -}}
{{- $k := .Values.kafka -}}
{{- if and $k.tls.enabled $k.sasl.enabled -}}SASL_SSL
{{- else if $k.tls.enabled -}}SSL
{{- else if $k.sasl.enabled -}}SASL_PLAINTEXT
{{- else -}}PLAINTEXT
{{- end -}}
{{- end }}

{{/* Where the Kafka CA certificate is mounted (the root filesystem is read-only). */}}
{{- define "orderflow.kafkaCaDir" -}}/etc/orderflow/kafka-ca{{- end }}

{{/*
The Kafka security environment of every service container (a YAML list, empty when kafka.tls
and kafka.sasl are off). The password only ever comes from a Secret.
*/}}
{{- define "orderflow.kafkaSecurityEnv" -}}
{{- $k := .Values.kafka -}}
{{- if or $k.tls.enabled $k.sasl.enabled }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ include "orderflow.kafkaSecurityProtocol" . | quote }}
{{- end }}
{{- if $k.sasl.enabled }}
- name: KAFKA_SASL_MECHANISM
  value: {{ $k.sasl.mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ $k.sasl.username | quote }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $k.sasl.passwordSecret | default $k.sasl.username | quote }}
      key: {{ $k.sasl.passwordKey | quote }}
{{- end }}
{{- if $k.tls.enabled }}
- name: KAFKA_SSL_CA_LOCATION
  value: {{ printf "%s/%s" (include "orderflow.kafkaCaDir" .) $k.tls.caKey | quote }}
{{- end }}
{{- end }}

{{/* The Secret the Kafka CA certificate is read from (kafka.tls.caSecret, else Strimzi's cluster CA). */}}
{{- define "orderflow.kafkaCaSecret" -}}
{{- .Values.kafka.tls.caSecret | default (printf "%s-cluster-ca-cert" .Values.kafka.clusterName) -}}
{{- end }}

{{/* Pod volumes for Kafka security: the CA certificate alone (one key of its Secret). Empty without TLS. */}}
{{- define "orderflow.kafkaVolumes" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-ca
  secret:
    secretName: {{ include "orderflow.kafkaCaSecret" . | quote }}
    items:
      - key: {{ .Values.kafka.tls.caKey | quote }}
        path: {{ .Values.kafka.tls.caKey | quote }}
{{- end }}
{{- end }}

{{/* Container volume mounts for Kafka security, read-only. Empty without TLS. */}}
{{- define "orderflow.kafkaVolumeMounts" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-ca
  mountPath: {{ include "orderflow.kafkaCaDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
One service Deployment. Arguments (dict): root, name (Deployment name), bin (binary/image),
port, replicas, resources, env (extra list), serviceAccount (empty: none mounted), recreate (bool).
*/}}
{{- define "orderflow.deployment" -}}
{{- $root := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  labels:
    {{- include "orderflow.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  replicas: {{ .replicas }}
  {{- if .recreate }}
  strategy:
    type: Recreate
  {{- end }}
  selector:
    matchLabels:
      {{- include "orderflow.selector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "orderflow.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .name }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .port | quote }}
        prometheus.io/path: /metrics
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- if .serviceAccount }}
      serviceAccountName: {{ .serviceAccount }}
      automountServiceAccountToken: true
      {{- else }}
      automountServiceAccountToken: false
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      terminationGracePeriodSeconds: 30
      {{- with (include "orderflow.kafkaVolumes" $root | trim) }}
      volumes:
        {{- . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .bin }}
          image: {{ printf "%s/%s:%s" $root.Values.image.prefix .bin $root.Values.image.tag | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ .port }}
              protocol: TCP
          env:
            - name: KAFKA_BOOTSTRAP
              value: {{ include "orderflow.bootstrap" $root | quote }}
            - name: HTTP_ADDR
              value: {{ printf "0.0.0.0:%v" .port | quote }}
            - name: LOG_FORMAT
              value: {{ $root.Values.logFormat | quote }}
            - name: RUST_LOG
              value: {{ $root.Values.rustLog | quote }}
            - name: HTTP_DRAIN_SECONDS
              value: {{ $root.Values.httpDrainSeconds | quote }}
            {{- with (include "orderflow.kafkaSecurityEnv" $root | trim) }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $root.Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with (include "orderflow.kafkaVolumeMounts" $root | trim) }}
          volumeMounts:
            {{- . | nindent 12 }}
          {{- end }}
          {{- with $root.Values.preStopSleepSeconds }}
          lifecycle:
            preStop:
              sleep: {seconds: {{ . }}}
          {{- end }}
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
            failureThreshold: 3
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            capabilities:
              drop: [ALL]
{{- end }}

{{/* A Service in front of a Deployment: dict root, name, port, service (type, nodePort). */}}
{{- define "orderflow.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  labels:
    {{- include "orderflow.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  type: {{ .service.type | default "ClusterIP" }}
  selector:
    {{- include "orderflow.selector" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .port }}
      targetPort: http
      protocol: TCP
      {{- if and (eq (.service.type | default "ClusterIP") "NodePort") .service.nodePort }}
      nodePort: {{ .service.nodePort }}
      {{- end }}
{{- end }}

{{/* The controller's ClusterRole (and binding) for its CRD: cluster-scoped, so named after the release and its namespace. */}}
{{- define "orderflow.crdRoleName" -}}
{{- printf "%s-%s-replay-controller-crd" .Release.Namespace .Release.Name -}}
{{- end }}
