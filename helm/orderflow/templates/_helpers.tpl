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

{{- define "orderflow.bootstrap" -}}
{{- .Values.kafka.bootstrap | default (printf "%s-kafka-bootstrap.%s.svc:9092" .Values.kafka.clusterName .Release.Namespace) -}}
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
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $root.Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
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
