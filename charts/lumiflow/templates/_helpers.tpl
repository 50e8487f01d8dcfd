{{/* Names and labels shared by the chart's objects. */}}
{{- define "lumiflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lumiflow.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "lumiflow.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Role or ClusterRole, by rbac.clusterWide. */}}
{{- define "lumiflow.roleKind" -}}
{{- if .Values.rbac.clusterWide -}}ClusterRole{{- else -}}Role{{- end -}}
{{- end -}}

{{/* kopf's namespace selection: the release namespace, or all namespaces. */}}
{{- define "lumiflow.kopfNamespaces" -}}
{{- if .Values.rbac.clusterWide }}
- --all-namespaces
{{- else }}
- --namespace={{ .Release.Namespace }}
{{- end }}
{{- end -}}

{{/*
A kopf operator's Deployment: one replica (kopf runs standalone, without peering), the
read-only image with an emptyDir on /tmp, kopf's liveness endpoint.
Arguments: dict with root (the top context), component, serviceAccount, module, env, values.
*/}}
{{- define "lumiflow.kopfDeployment" -}}
{{- $root := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "lumiflow.fullname" $root }}-{{ .component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "lumiflow.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ $root.Release.Name }}
      app.kubernetes.io/component: {{ .component }}
  template:
    metadata:
      labels:
        {{- include "lumiflow.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
    spec:
      serviceAccountName: {{ .serviceAccount }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "lumiflow.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            - kopf
            - run
            - --standalone
            - --liveness=http://0.0.0.0:8080/healthz
            {{- include "lumiflow.kopfNamespaces" $root | trim | nindent 12 }}
            - -m
            - {{ .module }}
          env:
            - {name: HOME, value: /tmp}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - {name: health, containerPort: 8080, protocol: TCP}
          livenessProbe:
            httpGet: {path: /healthz, port: health}
            initialDelaySeconds: 10
            periodSeconds: 30
            timeoutSeconds: 5
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
      volumes:
        - name: tmp
          emptyDir: {}
      {{- with .values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/*
A ServiceAccount, a Role (or ClusterRole) with the given rules, and its binding.
Arguments: dict with root, name, rules.
*/}}
{{- define "lumiflow.identity" -}}
{{- $root := .root -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "lumiflow.labels" $root | nindent 4 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ include "lumiflow.roleKind" $root }}
metadata:
  name: {{ .name }}
  {{- if not $root.Values.rbac.clusterWide }}
  namespace: {{ $root.Release.Namespace }}
  {{- end }}
  labels:
    {{- include "lumiflow.labels" $root | nindent 4 }}
rules:
  {{- toYaml .rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ include "lumiflow.roleKind" $root }}Binding
metadata:
  name: {{ .name }}
  {{- if not $root.Values.rbac.clusterWide }}
  namespace: {{ $root.Release.Namespace }}
  {{- end }}
  labels:
    {{- include "lumiflow.labels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ include "lumiflow.roleKind" $root }}
  name: {{ .name }}
subjects:
  - kind: ServiceAccount
    name: {{ .name }}
    namespace: {{ $root.Release.Namespace }}
{{- end -}}
