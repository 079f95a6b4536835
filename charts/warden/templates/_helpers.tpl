{{/* The chart's name. */}}
{{- define "warden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: names every object. */}}
{{- define "warden.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "warden.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "warden.labels" -}}
helm.sh/chart: {{ include "warden.chart" . }}
{{ include "warden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: warden
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select the gateway's pods. */}}
{{- define "warden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "warden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "warden.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The gateway's image: by digest when one is given, else by tag (appVersion by default). */}}
{{- define "warden.image" -}}
{{- include "warden.imageRef" (dict "image" .Values.image "tag" (.Values.image.tag | default .Chart.AppVersion)) -}}
{{- end -}}

{{/* An image (`image`: repository, digest) by digest when one is given, else by `tag`. */}}
{{- define "warden.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository .tag -}}
{{- end -}}
{{- end -}}

{{/* Paths inside the pod. */}}
{{- define "warden.dataDir" -}}/var/lib/warden{{- end -}}
{{- define "warden.configFile" -}}/etc/warden/config/warden.yaml{{- end -}}
{{- define "warden.tlsDir" -}}/etc/warden/tls{{- end -}}

{{/* The policy directory Warden reads, by policies.source. */}}
{{- define "warden.policyDir" -}}
{{- $p := .Values.policies -}}
{{- if eq $p.source "gitSync" -}}
{{- if $p.gitSync.subPath -}}
{{- printf "/etc/warden/git/current/%s" (trimAll "/" $p.gitSync.subPath) -}}
{{- else -}}
/etc/warden/git/current
{{- end -}}
{{- else -}}
/etc/warden/policies
{{- end -}}
{{- end -}}

{{/* "true" when Vault's Kubernetes auth needs the service-account token. */}}
{{- define "warden.vaultKubernetesAuth" -}}
{{- $vault := .Values.config.vault | default dict -}}
{{- $auth := $vault.auth | default dict -}}
{{- if eq ($auth.method | default "") "kubernetes" -}}true{{- end -}}
{{- end -}}

{{/* "true" when the proxy requires a client certificate (mTLS): no request reaches identify without one. */}}
{{- define "warden.requiresClientCert" -}}
{{- if and (include "warden.proxyTlsSecret" .) .Values.tls.proxy.clientCA.secretName .Values.tls.proxy.requireClientCert -}}true{{- end -}}
{{- end -}}

{{/* Bytes in a Kubernetes quantity as the schema allows it (4Gi, 1.5Gi, 512Mi, 4G, 4096). */}}
{{- define "warden.quantityBytes" -}}
{{- $q := toString . -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $unit := trimPrefix $number $q -}}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- if or (not $number) (not (hasKey $units $unit)) -}}
{{- fail (printf "dataVolume.sizeLimit %q is not a size (4Gi, 512Mi, 4G)" $q) -}}
{{- end -}}
{{- mulf (float64 $number) (index $units $unit) | int64 -}}
{{- end -}}

{{/* The most a Deployment's audit log may keep: three quarters of its emptyDir. The rest holds
what retention lets pass max_bytes (5% for records nobody waits for), the SQLite state and
the keys; an emptyDir over its sizeLimit gets the pod evicted, and the unshipped chain with it. */}}
{{- define "warden.auditBytesLimit" -}}
{{- div (mul (include "warden.quantityBytes" .Values.dataVolume.sizeLimit | int64) 3) 4 -}}
{{- end -}}

{{/* The features on whose state security rests (the state store's quarantines, token
revocations, approvers' factors, console sessions and pending approvals), named for a message;
empty when none is on. */}}
{{- define "warden.securityState" -}}
{{- $config := .Values.config | default dict -}}
{{- $on := list -}}
{{- if or .Values.console.enabled ($config.console | default dict).oidc -}}
{{- $on = append $on "the approval console (console sessions, TOTP and passkey enrolments)" -}}
{{- end -}}
{{- if $config.approvals -}}
{{- $on = append $on "approvals (pending approvals, votes, operators' TOTP enrolments)" -}}
{{- end -}}
{{- if ($config.admin | default dict).api -}}
{{- $on = append $on "admin.api (quarantines, token revocations)" -}}
{{- end -}}
{{- if (($config.fleet | default dict).quarantine | default dict).triggers -}}
{{- $on = append $on "fleet.quarantine.triggers (quarantines)" -}}
{{- end -}}
{{- if $config.canaries -}}
{{- $on = append $on "canaries (canary tokens, the quarantines they trigger)" -}}
{{- end -}}
{{- if (($config.identity | default dict).warden_issuer | default dict).key -}}
{{- $on = append $on "identity.warden_issuer.key (tokens that outlive the pod, their revocations)" -}}
{{- end -}}
{{- join ", " $on -}}
{{- end -}}

{{/* Refuses what the schema cannot say clearly: keys the chart manages, and combinations. */}}
{{- define "warden.validate" -}}
{{- $config := .Values.config | default dict -}}
{{- range $key := list "data_dir" -}}
{{- if hasKey $config $key -}}
{{- fail (printf "config.%s is managed by the chart (the data volume at /var/lib/warden): remove it" $key) -}}
{{- end -}}
{{- end -}}
{{- $listen := $config.listen | default dict -}}
{{- range $key, $instead := dict "proxy" "ports.proxy and listenAddress" "admin" "ports.admin and listenAddress" "shutdown_grace" "drain.shutdownGraceSeconds" "tls" "tls.proxy" "admin_tls" "tls.admin" -}}
{{- if hasKey $listen $key -}}
{{- fail (printf "config.listen.%s is managed by the chart: set %s instead" $key $instead) -}}
{{- end -}}
{{- end -}}
{{- if hasKey ($config.policy | default dict) "dir" -}}
{{- fail "config.policy.dir is managed by the chart: choose policies.source instead" -}}
{{- end -}}
{{- if hasKey ($config.audit | default dict) "dir" -}}
{{- fail "config.audit.dir is managed by the chart (under the data volume): remove it" -}}
{{- end -}}
{{- $retention := (($config.audit | default dict).retention | default dict) -}}
{{- if and (eq .Values.workload.kind "Deployment") $retention.max_bytes -}}
{{- $limit := include "warden.auditBytesLimit" . | int64 -}}
{{- if gt ($retention.max_bytes | int64) $limit -}}
{{- fail (printf "config.audit.retention.max_bytes (%d) must be at most three quarters of dataVolume.sizeLimit (%s): %d bytes. The emptyDir also holds the state and keys, and retention may pass max_bytes by 5%%; a pod over its sizeLimit is evicted and its unshipped audit chain lost. Lower max_bytes, raise dataVolume.sizeLimit, or leave max_bytes out (the chart then sets %d)" ($retention.max_bytes | int64) .Values.dataVolume.sizeLimit $limit $limit) -}}
{{- end -}}
{{- end -}}
{{- $consoleCfg := $config.console | default dict -}}
{{- range $key, $instead := dict "listen" "ports.console and console.enabled" "tls" "tls.console" -}}
{{- if hasKey $consoleCfg $key -}}
{{- fail (printf "config.console.%s is managed by the chart: set %s instead" $key $instead) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tls.proxy.clientCA.secretName (not (include "warden.proxyTlsSecret" .)) -}}
{{- fail "tls.proxy.clientCA needs tls.proxy.secretName (or tls.proxy.certificate): client certificates (mTLS) are asked for in a TLS handshake" -}}
{{- end -}}
{{- $certificate := .Values.tls.proxy.certificate -}}
{{- if and $certificate.enabled (not $certificate.issuerRef.name) -}}
{{- fail "tls.proxy.certificate needs issuerRef.name: the cert-manager Issuer or ClusterIssuer that signs the proxy's certificate" -}}
{{- end -}}
{{- if and $certificate.enabled (not $certificate.dnsNames) -}}
{{- fail (printf "tls.proxy.certificate needs dnsNames: the names agents reach the proxy by, e.g. %s.%s.svc" (include "warden.fullname" .) .Release.Namespace) -}}
{{- end -}}
{{- $strategy := .Values.updateStrategy -}}
{{- $statefulSet := eq .Values.workload.kind "StatefulSet" -}}
{{- if and $statefulSet (eq $strategy.type "Recreate") -}}
{{- fail "updateStrategy.type Recreate is a Deployment's: a StatefulSet takes RollingUpdate or OnDelete" -}}
{{- end -}}
{{- if and (not $statefulSet) (eq $strategy.type "OnDelete") -}}
{{- fail "updateStrategy.type OnDelete is a StatefulSet's: a Deployment takes RollingUpdate or Recreate" -}}
{{- end -}}
{{- if and (not $statefulSet) (eq $strategy.type "RollingUpdate") (has (toString $strategy.maxSurge) (list "0" "0%")) (has (toString $strategy.maxUnavailable) (list "0" "0%")) -}}
{{- fail "updateStrategy.maxSurge and maxUnavailable are both 0: a rollout could neither add a pod nor stop one. Keep maxSurge: 1 (a new pod is ready before an old one stops)" -}}
{{- end -}}
{{- $identity := $config.identity | default dict -}}
{{- if and (hasKey $identity "required") (not $identity.required) -}}
{{- fail "config.identity.required must stay true: Warden refuses to serve agents on a pod address without authenticating them" -}}
{{- end -}}
{{- $replicas := ternary .Values.autoscaling.maxReplicas .Values.replicaCount .Values.autoscaling.enabled -}}
{{- $state := $config.state | default dict -}}
{{- if and (gt (int $replicas) 1) (not $state.postgres) -}}
{{- fail "several replicas (replicaCount or autoscaling) need config.state.postgres: with SQLite each pod keeps approvals, pins and console sessions to itself" -}}
{{- end -}}
{{- if .Values.console.enabled -}}
{{- if not $consoleCfg.oidc -}}
{{- fail "console.enabled needs config.console.oidc (the SSO provider approvers sign in with)" -}}
{{- end -}}
{{- if not ($config.approvals | default dict).console_url -}}
{{- fail "console.enabled needs config.approvals.console_url (the console's public address)" -}}
{{- end -}}
{{- end -}}
{{- if and (or .Values.console.ingress.enabled .Values.console.httpRoute.enabled) (not .Values.console.enabled) -}}
{{- fail "console.ingress and console.httpRoute need console.enabled" -}}
{{- end -}}
{{- if and .Values.console.ingress.enabled .Values.console.enabled -}}
{{- $url := urlParse (($config.approvals | default dict).console_url) -}}
{{- if ne (.Values.console.ingress.host | default "") (regexReplaceAll ":[0-9]+$" $url.host "") -}}
{{- fail (printf "console.ingress.host (%q) must be the host of config.approvals.console_url (%q): the SSO provider redirects there" (.Values.console.ingress.host | default "") $url.host) -}}
{{- end -}}
{{- end -}}
{{- if and $consoleCfg.oidc (not .Values.console.enabled) -}}
{{- fail "config.console.oidc needs console.enabled: the console listener is served by the chart's Service only then" -}}
{{- end -}}
{{- if and (eq .Values.dnsPolicy "None") (not (.Values.dnsConfig | default dict).nameservers) -}}
{{- fail "dnsPolicy None takes the pods' resolvers from dnsConfig only, which names no nameservers: the pods could resolve no name (upstreams, IdP, Vault, PostgreSQL). Set dnsConfig.nameservers, or another dnsPolicy" -}}
{{- end -}}
{{- /* Last: the settings above are judged first. */ -}}
{{- if and (eq .Values.workload.kind "Deployment") (not $state.postgres) (not .Values.state.ephemeral) -}}
{{- $kept := include "warden.securityState" . | trim -}}
{{- if $kept -}}
{{- fail (printf "a Deployment keeps its SQLite state store on an emptyDir, which ends with the pod, and %s keep security state there: every configuration change rolls the pods, and with them a revoked token works again, quarantines lift and approvers enrol their second factors anew. Set config.state.postgres (state shared and kept), or workload.kind: StatefulSet (a volume per pod), or state.ephemeral: true to accept that this state ends with the pod" $kept) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Warden's configuration: config with the chart-managed keys added. */}}
{{- define "warden.config" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $host := .Values.listenAddress -}}
{{- $listen := dict "proxy" (printf "%s:%d" $host (int .Values.ports.proxy)) "admin" (printf "%s:%d" $host (int .Values.ports.admin)) "shutdown_grace" (printf "%ds" (int .Values.drain.shutdownGraceSeconds)) -}}
{{- if include "warden.proxyTlsSecret" . -}}
{{- $tls := dict "cert" (printf "%s/proxy/tls.crt" (include "warden.tlsDir" .)) "key" (printf "%s/proxy/tls.key" (include "warden.tlsDir" .)) -}}
{{- if .Values.tls.proxy.clientCA.secretName -}}
{{- $_ := set $tls "client_ca" (printf "%s/client-ca/%s" (include "warden.tlsDir" .) .Values.tls.proxy.clientCA.key) -}}
{{- $_ := set $tls "require_client_cert" .Values.tls.proxy.requireClientCert -}}
{{- end -}}
{{- $_ := set $listen "tls" $tls -}}
{{- end -}}
{{- if .Values.tls.admin.secretName -}}
{{- $_ := set $listen "admin_tls" (dict "cert" (printf "%s/admin/tls.crt" (include "warden.tlsDir" .)) "key" (printf "%s/admin/tls.key" (include "warden.tlsDir" .))) -}}
{{- end -}}
{{- $_ := set $config "listen" (mergeOverwrite ($config.listen | default dict) $listen) -}}
{{- $_ := set $config "data_dir" (include "warden.dataDir" .) -}}
{{- /* Every audit record names the pod that wrote it, by its full name (the host name stops at 63 characters). */ -}}
{{- $audit := $config.audit | default dict -}}
{{- if not (hasKey $audit "replica_id") -}}
{{- $_ := set $audit "replica_id" (dict "env" "WARDEN_REPLICA_ID") -}}
{{- $_ := set $config "audit" $audit -}}
{{- end -}}
{{- /* A Deployment's log is bounded below its emptyDir's sizeLimit (warden.auditBytesLimit). */ -}}
{{- $retention := $audit.retention | default dict -}}
{{- if and (eq .Values.workload.kind "Deployment") (not $retention.max_bytes) -}}
{{- $_ := set $retention "max_bytes" (include "warden.auditBytesLimit" . | int64) -}}
{{- $_ := set $audit "retention" $retention -}}
{{- $_ := set $config "audit" $audit -}}
{{- end -}}
{{- $_ := set $config "policy" (mergeOverwrite ($config.policy | default dict) (dict "dir" (include "warden.policyDir" .))) -}}
{{- if .Values.console.enabled -}}
{{- $console := dict "listen" (printf "%s:%d" $host (int .Values.ports.console)) -}}
{{- if .Values.tls.console.secretName -}}
{{- $_ := set $console "tls" (dict "cert" (printf "%s/console/tls.crt" (include "warden.tlsDir" .)) "key" (printf "%s/console/tls.key" (include "warden.tlsDir" .))) -}}
{{- end -}}
{{- $_ := set $config "console" (mergeOverwrite ($config.console | default dict) $console) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* The path the test pod sends its unauthenticated request to: under the first route. */}}
{{- define "warden.testPath" -}}
{{- if .Values.tests.path -}}
{{- .Values.tests.path -}}
{{- else -}}
{{- $routes := (.Values.config | default dict).routes | default list -}}
{{- if $routes -}}
{{- printf "%s/" (first $routes).prefix -}}
{{- else -}}
/openai/v1/models
{{- end -}}
{{- end -}}
{{- end -}}

{{/* http or https, for a listener with or without TLS. */}}
{{- define "warden.proxyScheme" -}}{{ ternary "https" "http" (not (empty (include "warden.proxyTlsSecret" .))) }}{{- end -}}
{{- define "warden.adminScheme" -}}{{ ternary "HTTPS" "HTTP" (not (empty .Values.tls.admin.secretName)) }}{{- end -}}

{{/* The git-sync container (policies.source: gitSync): once before Warden starts, then beside it. */}}
{{- define "warden.gitSyncContainer" -}}
{{- $root := .root -}}
{{- $g := $root.Values.policies.gitSync -}}
image: {{ include "warden.imageRef" (dict "image" $g.image "tag" $g.image.tag) }}
imagePullPolicy: {{ $g.image.pullPolicy }}
args:
  - --repo={{ $g.repo }}
  - --ref={{ $g.ref }}
  - --root=/etc/warden/git
  - --link=current
  - --depth=1
  {{- if .oneTime }}
  - --one-time
  {{- else }}
  - --period={{ $g.period }}
  {{- end }}
{{- with $g.credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ . }}
{{- end }}
resources:
  {{- toYaml $g.resources | nindent 2 }}
securityContext:
  {{- toYaml $root.Values.securityContext | nindent 2 }}
volumeMounts:
  - name: git
    mountPath: /etc/warden/git
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{/* The Secret of the proxy's certificate: tls.proxy.secretName, else the one cert-manager
keeps for tls.proxy.certificate; empty without TLS. */}}
{{- define "warden.proxyTlsSecret" -}}
{{- if .Values.tls.proxy.secretName -}}
{{- .Values.tls.proxy.secretName -}}
{{- else if .Values.tls.proxy.certificate.enabled -}}
{{- printf "%s-proxy-tls" (include "warden.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The pod's affinity: `affinity` when given, else podAntiAffinity's preset (soft: preferred,
hard: required) over the pods of this release. A Deployment's term counts only pods of the
same template (matchLabelKeys pod-template-hash), so that with hard anti-affinity a rollout's
surge pod may share a node with the old pods it replaces instead of staying Pending. */}}
{{- define "warden.affinity" -}}
{{- if .Values.affinity -}}
{{- toYaml .Values.affinity -}}
{{- else if ne .Values.podAntiAffinity.preset "none" -}}
{{- $term := dict "topologyKey" .Values.podAntiAffinity.topologyKey "labelSelector" (dict "matchLabels" (include "warden.selectorLabels" . | fromYaml)) -}}
{{- if ne .Values.workload.kind "StatefulSet" -}}
{{- $_ := set $term "matchLabelKeys" (list "pod-template-hash") -}}
{{- end -}}
{{- $anti := dict -}}
{{- if eq .Values.podAntiAffinity.preset "hard" -}}
{{- $_ := set $anti "requiredDuringSchedulingIgnoredDuringExecution" (list $term) -}}
{{- else -}}
{{- $_ := set $anti "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term)) -}}
{{- end -}}
{{- toYaml (dict "podAntiAffinity" $anti) -}}
{{- end -}}
{{- end -}}

{{/* Extra (init) containers, `containers`: each without a securityContext gets the chart's. */}}
{{- define "warden.extraContainers" -}}
{{- $out := list -}}
{{- range .containers -}}
{{- $c := deepCopy . -}}
{{- if not (hasKey $c "securityContext") -}}
{{- $_ := set $c "securityContext" (deepCopy $.root.Values.securityContext) -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The warden container's environment (after WARDEN_CONFIG), in the pods and the migration
Job alike: TMPDIR, the replica's name, secrets.env and extraEnv. */}}
{{- define "warden.env" -}}
- name: TMPDIR
  value: /tmp
# The pod's name: audit.replica_id, in every audit record.
- name: WARDEN_REPLICA_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- range $name, $ref := .Values.secrets.env }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secretName }}
      key: {{ $ref.key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The warden container's envFrom entries (secrets.existingSecret, extraEnvFrom); empty
without them. */}}
{{- define "warden.envFrom" -}}
{{- with .Values.secrets.existingSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- with .Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Where and how the pods run, besides affinity: runtimeClassName, hostAliases, dnsPolicy,
dnsConfig (the gateway's pods and the migration Job's). */}}
{{- define "warden.podPlacement" -}}
{{- with .Values.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- with .Values.hostAliases }}
hostAliases:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.dnsPolicy }}
dnsPolicy: {{ . }}
{{- end }}
{{- with .Values.dnsConfig }}
dnsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The files the gateway reads beside its configuration, as the pods mount them (the
migration Job's `warden check` too): its policies (policies.source) and its TLS Secrets. */}}
{{- define "warden.filesMounts" -}}
{{- $gitSync := eq .Values.policies.source "gitSync" -}}
{{- $proxyTls := include "warden.proxyTlsSecret" . -}}
{{- if has .Values.policies.source (list "values" "configMap") }}
- name: policies
  mountPath: /etc/warden/policies
  readOnly: true
{{- else if $gitSync }}
- name: git
  mountPath: /etc/warden/git
  readOnly: true
{{- end }}
{{- if $proxyTls }}
- name: tls-proxy
  mountPath: {{ include "warden.tlsDir" . }}/proxy
  readOnly: true
{{- end }}
{{- if and $proxyTls .Values.tls.proxy.clientCA.secretName }}
- name: tls-client-ca
  mountPath: {{ include "warden.tlsDir" . }}/client-ca
  readOnly: true
{{- end }}
{{- if .Values.tls.admin.secretName }}
- name: tls-admin
  mountPath: {{ include "warden.tlsDir" . }}/admin
  readOnly: true
{{- end }}
{{- if and .Values.console.enabled .Values.tls.console.secretName }}
- name: tls-console
  mountPath: {{ include "warden.tlsDir" . }}/console
  readOnly: true
{{- end }}
{{- end -}}

{{/* The volumes of "warden.filesMounts"; `policies` is the ConfigMap of policies.source
`values`. */}}
{{- define "warden.filesVolumes" -}}
{{- $policies := .policies -}}
{{- with .root -}}
{{- $gitSync := eq .Values.policies.source "gitSync" -}}
{{- $proxyTls := include "warden.proxyTlsSecret" . -}}
{{- if eq .Values.policies.source "values" }}
- name: policies
  configMap:
    name: {{ $policies }}
{{- else if eq .Values.policies.source "configMap" }}
- name: policies
  configMap:
    name: {{ .Values.policies.existingConfigMap }}
{{- else if $gitSync }}
- name: git
  emptyDir:
    sizeLimit: 256Mi
{{- end }}
{{- if $proxyTls }}
- name: tls-proxy
  secret:
    secretName: {{ $proxyTls }}
    defaultMode: 0440
{{- end }}
{{- if and $proxyTls .Values.tls.proxy.clientCA.secretName }}
- name: tls-client-ca
  secret:
    secretName: {{ .Values.tls.proxy.clientCA.secretName }}
    defaultMode: 0440
{{- end }}
{{- if .Values.tls.admin.secretName }}
- name: tls-admin
  secret:
    secretName: {{ .Values.tls.admin.secretName }}
    defaultMode: 0440
{{- end }}
{{- if and .Values.console.enabled .Values.tls.console.secretName }}
- name: tls-console
  secret:
    secretName: {{ .Values.tls.console.secretName }}
    defaultMode: 0440
{{- end }}
{{- end -}}
{{- end -}}
