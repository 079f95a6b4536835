//! The Helm chart (`charts/warden`): linted, rendered over a matrix of values files
//! (`tests/helm/values/`) with Helm's own SDK, every manifest validated against the current
//! Kubernetes versions; a secure pod by default; each value reaching its manifest; the rendered
//! configuration accepted by the real `warden check` and served by the real `warden serve`;
//! bad values refused with a clear message; the image's Dockerfile and the values reference
//! in docs/deploy.md.

use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use warden_e2e::helm::{self, Case, FULLNAME, PodFiles};
use warden_e2e::process::Proc;
use warden_e2e::warden::free_port;

/// The strings of a JSON array.
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The `name` of each entry of a JSON array (ports, env, containers).
fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The entry of a JSON array whose `name` is `name`.
fn named<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no entry named {name} in {v}"))
}

/// Whether `labels` carries every label of `selector`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The secure pod the chart promises, checked on one case's gateway pod and test pod.
fn assert_secure_pod(case: &Case) {
    let name = &case.name;
    let pod = case.pod();
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    assert!(
        pod["securityContext"]["runAsUser"].as_u64().unwrap_or(0) > 0,
        "{name}: runs as root"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{name}"
    );
    assert!(pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none());
    let mut containers: Vec<&Value> = pod["containers"].as_array().unwrap().iter().collect();
    containers.extend(pod["initContainers"].as_array().into_iter().flatten());
    let test_pod = case.get("Pod", &format!("{FULLNAME}-test"));
    containers.extend(test_pod["spec"]["containers"].as_array().unwrap());
    for job in case.all("Job") {
        let spec = &job["spec"]["template"]["spec"];
        assert_eq!(spec["securityContext"], pod["securityContext"], "{name}");
        containers.extend(spec["containers"].as_array().unwrap());
    }
    for c in containers {
        let sc = &c["securityContext"];
        let who = format!("{name}: container {}", c["name"]);
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{who}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{who}");
        assert_eq!(sc["runAsNonRoot"], true, "{who}");
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{who}");
        assert!(sc["capabilities"].get("add").is_none(), "{who}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{who}");
        assert!(
            c["resources"]["limits"]["memory"].is_string(),
            "{who}: no memory limit"
        );
    }
    assert_eq!(test_pod["spec"]["automountServiceAccountToken"], false);
    for volume in pod["volumes"].as_array().unwrap() {
        assert!(
            volume.get("hostPath").is_none(),
            "{name}: hostPath volume {volume}"
        );
    }
}

/// Services, probes, selectors, routes and monitors refer to what the pod really has; every
/// `{ env: NAME }` source of the configuration reaches the container.
fn assert_consistent(case: &Case) {
    let name = &case.name;
    let pod_labels = &case.workload()["spec"]["template"]["metadata"]["labels"];
    assert!(
        selects(
            &case.workload()["spec"]["selector"]["matchLabels"],
            pod_labels
        ),
        "{name}: the workload's selector misses its pods"
    );
    let container = case.warden_container();
    let port_names: BTreeSet<String> = names(&container["ports"]).into_iter().collect();
    let test_labels = &case.get("Pod", &format!("{FULLNAME}-test"))["metadata"]["labels"];
    for service in case.all("Service") {
        let sname = &service["metadata"]["name"];
        assert!(
            selects(&service["spec"]["selector"], pod_labels),
            "{name}: Service {sname} selects no gateway pod"
        );
        assert!(
            !selects(&service["spec"]["selector"], test_labels),
            "{name}: Service {sname} would send traffic to the test pod"
        );
        for port in service["spec"]["ports"].as_array().unwrap() {
            let target = port["targetPort"].as_str().unwrap();
            assert!(
                port_names.contains(target),
                "{name}: Service {sname} targets port {target}, the container has {port_names:?}"
            );
        }
    }
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "admin", "{name}");
    }
    for kind in ["PodDisruptionBudget", "NetworkPolicy"] {
        for m in case.all(kind) {
            let selector = if kind == "NetworkPolicy" {
                &m["spec"]["podSelector"]["matchLabels"]
            } else {
                &m["spec"]["selector"]["matchLabels"]
            };
            assert!(
                selects(selector, pod_labels),
                "{name}: {kind} selects no pod"
            );
        }
    }
    for monitor in case.all("ServiceMonitor") {
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        let admin = case.get("Service", &format!("{FULLNAME}-admin"));
        assert!(
            selects(
                &monitor["spec"]["selector"]["matchLabels"],
                &admin["metadata"]["labels"]
            ),
            "{name}: the ServiceMonitor misses the admin Service"
        );
        let main = case.get("Service", FULLNAME);
        assert!(
            !selects(
                &monitor["spec"]["selector"]["matchLabels"],
                &main["metadata"]["labels"]
            ),
            "{name}: the ServiceMonitor would scrape the agents' Service"
        );
        assert_eq!(monitor["spec"]["endpoints"][0]["port"], "admin");
        assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    }
    for monitor in case.all("PodMonitor") {
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        assert!(
            selects(&monitor["spec"]["selector"]["matchLabels"], pod_labels),
            "{name}: the PodMonitor selects no gateway pod"
        );
        assert!(
            !selects(&monitor["spec"]["selector"]["matchLabels"], test_labels),
            "{name}: the PodMonitor would scrape the test pod"
        );
        let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
        assert!(port_names.contains(endpoint["port"].as_str().unwrap()));
        assert_eq!(endpoint["port"], "admin");
        assert_eq!(endpoint["path"], "/metrics");
    }
    for job in case.all("Job") {
        assert!(
            !selects(
                &case.get("Service", FULLNAME)["spec"]["selector"],
                &job["spec"]["template"]["metadata"]["labels"]
            ),
            "{name}: the agents' Service would send traffic to the migration Job"
        );
    }
    let service_ports: Vec<Value> = case.get("Service", FULLNAME)["spec"]["ports"]
        .as_array()
        .unwrap()
        .clone();
    for route in case.all("HTTPRoute") {
        assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
        assert!(
            route["spec"]["parentRefs"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
        );
        let backend = &route["spec"]["rules"][0]["backendRefs"][0];
        assert_eq!(backend["name"], FULLNAME);
        assert!(
            service_ports
                .iter()
                .any(|p| p["name"] == "console" && p["port"] == backend["port"]),
            "{name}: the HTTPRoute's backend port is not the Service's console port"
        );
    }
    for ingress in case.all("Ingress") {
        let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
        assert_eq!(backend["name"], FULLNAME);
        assert!(
            service_ports
                .iter()
                .any(|p| p["name"] == backend["port"]["name"]),
            "{name}: the Ingress's backend port is not on the Service"
        );
    }
    let mut sources = Vec::new();
    helm::env_sources(&case.config, &mut sources);
    let env = names(&container["env"]);
    let env_from = container["envFrom"]
        .as_array()
        .is_some_and(|e| !e.is_empty());
    for n in sources {
        assert!(
            env.contains(&n) || env_from,
            "{name}: the configuration reads ${n}, which the container is not given"
        );
    }
}

#[tokio::test]
async fn chart_lints_renders_and_validates_on_current_kubernetes_for_every_values_case() {
    let rendered = helm::render(&[]).await.unwrap();
    let versions = &rendered.kubernetes_versions;
    assert!(versions.len() >= 4, "validated against {versions:?} only");
    let newest: Vec<u32> = versions
        .last()
        .unwrap()
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        newest >= vec![1, 34],
        "newest Kubernetes checked: {newest:?}"
    );
    let files = helm::every_values_file().unwrap();
    assert!(files.len() >= 12, "values matrix: {files:?}");
    for file in &files {
        let case = file.file_stem().unwrap().to_str().unwrap();
        let case = rendered
            .cases
            .get(case)
            .unwrap_or_else(|| panic!("{case} not rendered"));
        assert_secure_pod(case);
        assert_consistent(case);
        for m in &case.manifests {
            let labels = &m["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/name"], "warden", "{m}");
            assert_eq!(labels["app.kubernetes.io/instance"], "gw", "{m}");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{m}");
        }
    }
}

#[tokio::test]
async fn pod_is_secure_by_default() {
    let case = helm::case("minimal").await;
    assert_secure_pod(&case);
    let pod = case.pod();
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(
        case.get("ServiceAccount", FULLNAME)["automountServiceAccountToken"],
        false
    );
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    // The data directory and /tmp are the only writable places.
    let writable: BTreeSet<&str> = case.warden_container()["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["readOnly"] != true)
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(writable, BTreeSet::from(["/var/lib/warden", "/tmp"]));
    // Agents must authenticate; the admin listener is not on the agents' Service.
    assert_eq!(case.config["identity"]["required"], true);
    let agents = case.get("Service", FULLNAME);
    assert_eq!(agents["spec"]["type"], "ClusterIP");
    let ports: Vec<&str> = agents["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["proxy"]);
    // The image defaults to the chart's appVersion.
    assert_eq!(
        case.warden_container()["image"],
        "ghcr.io/warden-gateway/warden:0.1.0"
    );
    assert!(case.notes.contains("helm test gw"), "{}", case.notes);
    assert!(case.notes.contains("emptyDir"), "{}", case.notes);
}

#[tokio::test]
async fn values_reach_the_manifests() {
    let case = helm::case("hpa-off").await;
    let workload = case.workload();
    assert_eq!(workload["spec"]["replicas"], 3);
    assert!(case.all("HorizontalPodAutoscaler").is_empty());
    let c = case.warden_container();
    assert_eq!(
        c["image"],
        "registry.example.com/security/warden@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["resources"]["requests"]["cpu"], "2");
    assert_eq!(c["resources"]["limits"]["memory"], "2Gi");
    // The drain: the kubelet sleeps 7 s, then Warden gets 50 s (listen.shutdown_grace), and
    // the pod is killed only after both and a margin.
    assert_eq!(c["lifecycle"]["preStop"]["sleep"]["seconds"], 7);
    assert_eq!(case.config["listen"]["shutdown_grace"], "50s");
    let grace = case.pod()["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert_eq!(grace, 7 + 50 + 10);
    // Ports: the listeners, the container, the probes and the Services agree.
    assert_eq!(case.config["listen"]["proxy"], "0.0.0.0:8443");
    assert_eq!(case.config["listen"]["admin"], "0.0.0.0:9191");
    assert_eq!(named(&c["ports"], "proxy")["containerPort"], 8443);
    assert_eq!(named(&c["ports"], "admin")["containerPort"], 9191);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["periodSeconds"], 3);
    assert_eq!(c["readinessProbe"]["failureThreshold"], 4);
    let agents = case.get("Service", FULLNAME);
    assert_eq!(agents["spec"]["type"], "LoadBalancer");
    assert_eq!(agents["spec"]["ports"][0]["port"], 443);
    assert_eq!(
        strings(&agents["spec"]["loadBalancerSourceRanges"]),
        ["203.0.113.0/24"]
    );
    assert_eq!(agents["spec"]["sessionAffinity"], "ClientIP");
    assert_eq!(
        case.get("Service", &format!("{FULLNAME}-admin"))["spec"]["ports"][0]["port"],
        9191
    );
    assert_eq!(
        case.get("PodDisruptionBudget", FULLNAME)["spec"]["minAvailable"],
        2
    );
    assert_eq!(case.config["runtime"]["worker_threads"], 2);
    // The test hook asks the admin Service on its port.
    let test = &case.get("Pod", &format!("{FULLNAME}-test"))["spec"]["containers"][0];
    assert_eq!(
        named(&test["env"], "READY_URL")["value"],
        "http://gw-warden-admin:9191/readyz"
    );
    assert_eq!(
        named(&test["env"], "PROXY_URL")["value"],
        "http://gw-warden:443/openai/v1/models"
    );
    // Topology spread over zones and nodes, by the pods' own labels.
    let spread = case.pod()["topologySpreadConstraints"].as_array().unwrap();
    let keys: Vec<&str> = spread
        .iter()
        .map(|s| s["topologyKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
}

#[tokio::test]
async fn rollouts_keep_capacity_and_replicas_keep_apart_by_default() {
    let minimal = helm::case("minimal").await;
    let spec = &minimal.workload()["spec"];
    assert_eq!(spec["minReadySeconds"], 10);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], 1);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    // Soft anti-affinity over this release's pods of the same template, by node.
    let soft = &minimal.pod()["affinity"]["podAntiAffinity"];
    assert!(
        soft.get("requiredDuringSchedulingIgnoredDuringExecution")
            .is_none()
    );
    let preferred = &soft["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(preferred["weight"], 100);
    let term = &preferred["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert!(selects(
        &term["labelSelector"]["matchLabels"],
        &minimal.workload()["spec"]["template"]["metadata"]["labels"]
    ));
    assert_eq!(strings(&term["matchLabelKeys"]), ["pod-template-hash"]);

    // Set: hard anti-affinity, a slower rollout, the operator's own spread constraints.
    let ha = helm::case("ha").await;
    let spec = &ha.workload()["spec"];
    assert_eq!(spec["minReadySeconds"], 30);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let hard = &ha.pod()["affinity"]["podAntiAffinity"];
    assert!(
        hard.get("preferredDuringSchedulingIgnoredDuringExecution")
            .is_none()
    );
    let term = &hard["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    // A surge pod may share a node with the pods it replaces: the rollout cannot stall.
    assert_eq!(strings(&term["matchLabelKeys"]), ["pod-template-hash"]);
    let spread = ha.pod()["topologySpreadConstraints"].as_array().unwrap();
    assert_eq!(
        spread.len(),
        1,
        "the given constraints replace the generated ones"
    );
    assert_eq!(spread[0]["whenUnsatisfiable"], "DoNotSchedule");
    assert_eq!(spread[0]["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(ha.pod()["priorityClassName"], "warden-critical");
    let template = &spec["template"]["metadata"];
    assert_eq!(template["labels"]["example.com/tier"], "gateway");
    assert_eq!(
        template["annotations"]["example.com/owner"],
        "platform-security"
    );
    assert!(template["annotations"]["checksum/config"].is_string());

    // A StatefulSet: a partition, no surge, and no pod-template-hash (its pods have none).
    let sts = helm::case("statefulset").await;
    let spec = &sts.workload()["spec"];
    assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(spec["updateStrategy"]["rollingUpdate"]["partition"], 1);
    assert_eq!(spec["minReadySeconds"], 10);
    let term = &sts.pod()["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert!(term.get("matchLabelKeys").is_none(), "{term}");
}

#[tokio::test]
async fn platform_values_reach_the_pods_monitors_and_extra_objects() {
    let case = helm::case("platform").await;
    let pod = case.pod();
    assert_eq!(pod["runtimeClassName"], "gvisor");
    assert_eq!(pod["hostAliases"][0]["ip"], "10.20.0.5");
    assert_eq!(
        strings(&pod["hostAliases"][0]["hostnames"]),
        ["vault.internal", "db.internal"]
    );
    assert_eq!(pod["dnsPolicy"], "None");
    assert_eq!(strings(&pod["dnsConfig"]["nameservers"]), ["10.96.0.10"]);
    assert_eq!(pod["dnsConfig"]["options"][0]["name"], "ndots");
    assert_eq!(pod["dnsConfig"]["options"][0]["value"], "2");
    // A PodMonitor instead of the ServiceMonitor, labelled for the operator's Prometheus.
    assert!(case.all("ServiceMonitor").is_empty());
    let monitor = case.get("PodMonitor", FULLNAME);
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["interval"], "15s");
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["scheme"], "http");
    // Extra objects, a map and a template string, rendered with the release's values and the
    // chart's labels (their own win), never the gateway's component label.
    let extra = case.get("ConfigMap", &format!("{FULLNAME}-extra"));
    assert_eq!(extra["data"]["release"], "gw");
    let labels = &extra["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/part-of"], "platform");
    assert_eq!(labels["app.kubernetes.io/instance"], "gw");
    assert!(
        labels.get("app.kubernetes.io/component").is_none(),
        "{labels}"
    );
    let limits = case.get("LimitRange", "gw-limits");
    assert_eq!(limits["spec"]["limits"][0]["max"]["memory"], "4Gi");
    assert_eq!(
        limits["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "warden"
    );
    // Unset, none of it is in the pod.
    let minimal = helm::case("minimal").await;
    for key in ["runtimeClassName", "hostAliases", "dnsPolicy", "dnsConfig"] {
        assert!(minimal.pod().get(key).is_none(), "{key}");
    }
    assert!(minimal.all("PodMonitor").is_empty());
}

#[tokio::test]
async fn a_pre_upgrade_job_migrates_the_postgres_schema_with_the_new_image_and_configuration() {
    let case = helm::case("platform").await;
    let job = case.get("Job", &format!("{FULLNAME}-migrate"));
    let hook = |m: &Value, key: &str| m["metadata"]["annotations"][key].clone();
    assert_eq!(hook(job, "helm.sh/hook"), "pre-upgrade");
    assert_eq!(job["spec"]["backoffLimit"], 2);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 300);
    let spec = &job["spec"]["template"]["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    let container = &spec["containers"][0];
    assert_eq!(
        strings(&container["args"]),
        [
            "state",
            "migrate",
            "--config",
            "/etc/warden/config/warden.yaml"
        ]
    );
    // The new image, the gateway's secrets and files, placed like the gateway's pods.
    let warden = case.warden_container();
    assert_eq!(container["image"], warden["image"]);
    assert_eq!(container["envFrom"], warden["envFrom"]);
    assert_eq!(container["env"], warden["env"]);
    assert!(container["resources"]["limits"]["memory"].is_string());
    let mount = named(&container["volumeMounts"], "db-ca");
    assert_eq!(mount["mountPath"], "/etc/warden/secrets/db-ca");
    assert_eq!(
        named(&spec["volumes"], "db-ca")["secret"]["secretName"],
        "warden-db-ca"
    );
    for key in [
        "serviceAccountName",
        "automountServiceAccountToken",
        "runtimeClassName",
        "hostAliases",
        "dnsPolicy",
        "dnsConfig",
        "priorityClassName",
        "nodeSelector",
    ] {
        assert_eq!(spec[key], case.pod()[key], "{key}");
    }
    // Hooks run before the release's objects are applied: the Job reads the new configuration
    // from a ConfigMap made by the same hook, before it.
    let config = named(&spec["volumes"], "config")["configMap"]["name"]
        .as_str()
        .unwrap();
    let hook_config = case.get("ConfigMap", config);
    assert_ne!(config, FULLNAME);
    assert_eq!(hook(hook_config, "helm.sh/hook"), "pre-upgrade");
    let weight = |m: &Value| {
        hook(m, "helm.sh/hook-weight")
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert!(weight(hook_config) < weight(job));
    assert_eq!(
        hook_config["data"]["warden.yaml"],
        case.get("ConfigMap", FULLNAME)["data"]["warden.yaml"]
    );
    // Only with PostgreSQL (SQLite lives in each pod), and not when turned off.
    assert!(
        helm::case("postgres")
            .await
            .find("Job", &format!("{FULLNAME}-migrate"))
            .is_some()
    );
    for other in ["minimal", "statefulset", "ha"] {
        assert!(helm::case(other).await.all("Job").is_empty(), "{other}");
    }
}

#[tokio::test]
async fn the_migration_job_checks_the_new_configuration_with_the_pods_files_before_migrating() {
    for name in ["platform", "postgres-files", "postgres-gitsync"] {
        let case = helm::case(name).await;
        let job = case.get("Job", &format!("{FULLNAME}-migrate"));
        let spec = &job["spec"]["template"]["spec"];
        // `warden check` runs first, as an init container: a configuration the new pods
        // would refuse fails the Job before anything is migrated.
        let check = spec["initContainers"]
            .as_array()
            .and_then(|c| c.last())
            .unwrap_or_else(|| panic!("{name}: no init container"));
        assert_eq!(check["name"], "check", "{name}");
        assert_eq!(
            strings(&check["args"]),
            ["check", "--config", "/etc/warden/config/warden.yaml"],
            "{name}"
        );
        assert_eq!(names(&spec["containers"]), ["migrate"], "{name}");
        let warden = case.warden_container();
        for key in ["image", "env", "envFrom", "securityContext"] {
            assert_eq!(check[key], warden[key], "{name}: {key}");
        }
        // Every file the pods read (policies, TLS Secrets, secretMounts) where they read it,
        // from the same source, but for what hooks run too early to find: the new
        // configuration and policies.source `values`' policies, from the hook's ConfigMaps.
        let pod = case.pod();
        for mount in warden["volumeMounts"].as_array().unwrap() {
            let volume = mount["name"].as_str().unwrap();
            let path = &mount["mountPath"];
            assert!(
                check["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["name"] == volume && &m["mountPath"] == path),
                "{name}: the check lacks {volume} at {path}"
            );
            let (ours, theirs) = (
                named(&spec["volumes"], volume),
                named(&pod["volumes"], volume),
            );
            match volume {
                _ if ours == theirs => {}
                "config" | "policies" => {
                    let hooked = ours["configMap"]["name"].as_str().unwrap();
                    let released = theirs["configMap"]["name"].as_str().unwrap();
                    let hooked = case.get("ConfigMap", hooked);
                    assert_eq!(
                        hooked["metadata"]["annotations"]["helm.sh/hook"], "pre-upgrade",
                        "{name}: {volume}"
                    );
                    assert_eq!(
                        hooked["data"],
                        case.get("ConfigMap", released)["data"],
                        "{name}: {volume}"
                    );
                }
                // Each their own scratch space; git-sync fills `git` in both.
                "data" | "tmp" | "git" => assert!(ours.get("emptyDir").is_some(), "{name}"),
                _ => panic!("{name}: {volume} is {ours}, the pods' {theirs}"),
            }
        }
        let inits = names(&spec["initContainers"]);
        if name == "postgres-gitsync" {
            assert_eq!(
                inits,
                ["git-sync-init", "check"],
                "{name}: policies fetched first"
            );
            assert_eq!(
                named(&spec["initContainers"], "git-sync-init"),
                named(&pod["initContainers"], "git-sync-init"),
                "{name}"
            );
        } else {
            assert_eq!(inits, ["check"], "{name}");
        }
    }
}

#[tokio::test]
async fn extra_and_init_containers_run_as_strictly_as_warden_and_env_from_reaches_it() {
    let ha = helm::case("ha").await;
    let pod = ha.pod();
    assert_eq!(names(&pod["containers"]), ["warden", "log-shipper"]);
    let shipper = named(&pod["containers"], "log-shipper");
    // Given no securityContext, it gets the warden container's.
    assert_eq!(
        shipper["securityContext"],
        ha.warden_container()["securityContext"]
    );
    assert_eq!(shipper["volumeMounts"][0]["name"], "shipper-buffer");
    assert!(names(&pod["volumes"]).contains(&"shipper-buffer".to_owned()));
    let init = named(&pod["initContainers"], "wait-for-postgres");
    assert!(strings(&init["command"]).join(" ").contains("pg_isready"));
    assert_eq!(init["securityContext"]["readOnlyRootFilesystem"], true);
    let env_from = ha.warden_container()["envFrom"].as_array().unwrap();
    assert_eq!(env_from[0]["secretRef"]["name"], "warden-secrets");
    assert_eq!(env_from[1]["configMapRef"]["name"], "warden-extra-env");
    // git-sync's first sync stays the first init container.
    let git = helm::case("gitsync").await;
    assert_eq!(names(&git.pod()["initContainers"]), ["git-sync-init"]);
}

#[tokio::test]
async fn a_cert_manager_certificate_is_the_secret_the_proxy_listener_serves() {
    let case = helm::case("cert-manager").await;
    let certificate = case.get("Certificate", &format!("{FULLNAME}-proxy"));
    assert_eq!(certificate["apiVersion"], "cert-manager.io/v1");
    let spec = &certificate["spec"];
    let secret = format!("{FULLNAME}-proxy-tls");
    assert_eq!(spec["secretName"], secret.as_str());
    assert_eq!(spec["issuerRef"]["name"], "internal-ca");
    assert_eq!(spec["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(spec["issuerRef"]["group"], "cert-manager.io");
    assert_eq!(
        strings(&spec["dnsNames"]),
        [
            "gw-warden.ai-gateway.svc",
            "gw-warden.ai-gateway.svc.cluster.local"
        ]
    );
    assert_eq!(spec["privateKey"]["rotationPolicy"], "Always");
    assert!(strings(&spec["usages"]).contains(&"server auth".to_owned()));
    // The pod mounts that Secret where the listener's configuration reads it.
    let volume = named(&case.pod()["volumes"], "tls-proxy");
    assert_eq!(volume["secret"]["secretName"], secret.as_str());
    let mount = named(&case.warden_container()["volumeMounts"], "tls-proxy");
    assert_eq!(mount["mountPath"], "/etc/warden/tls/proxy");
    assert_eq!(
        case.config["listen"]["tls"]["cert"],
        "/etc/warden/tls/proxy/tls.crt"
    );
    // The test hook speaks HTTPS to it.
    let test = case.get("Pod", &format!("{FULLNAME}-test"));
    let env = test["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("https://gw-warden:8080/openai/"), "{env}");
    // Without it, no Certificate.
    assert!(helm::case("minimal").await.all("Certificate").is_empty());
}

#[tokio::test]
async fn autoscaling_replaces_fixed_replicas_and_shares_state_in_postgres() {
    let case = helm::case("postgres").await;
    assert!(case.workload()["spec"].get("replicas").is_none());
    let hpa = case.get("HorizontalPodAutoscaler", FULLNAME);
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    assert_eq!(hpa["spec"]["maxReplicas"], 12);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], FULLNAME);
    let metrics = hpa["spec"]["metrics"].as_array().unwrap();
    assert_eq!(metrics[0]["resource"]["name"], "cpu");
    assert_eq!(metrics[0]["resource"]["target"]["averageUtilization"], 60);
    assert_eq!(metrics[1]["resource"]["name"], "memory");
    assert_eq!(metrics[1]["resource"]["target"]["averageUtilization"], 80);
    assert_eq!(
        case.config["state"]["postgres"]["url"]["env"],
        "WARDEN_STATE_URL"
    );
    assert_eq!(
        case.warden_container()["envFrom"][0]["secretRef"]["name"],
        "warden-secrets"
    );
    // Replicas share one approvals factor key, or the notes say they do not.
    assert!(
        !case.notes.contains("approvals factor key"),
        "{}",
        case.notes
    );
    let separate = helm::case("hpa-off").await;
    assert!(
        separate
            .notes
            .contains("several replicas, each making its own approvals factor key"),
        "{}",
        separate.notes
    );
}

#[tokio::test]
async fn network_policy_admits_the_listeners_and_only_declared_egress() {
    let case = helm::case("networkpolicy").await;
    let np = case.get("NetworkPolicy", FULLNAME);
    assert_eq!(strings(&np["spec"]["policyTypes"]), ["Ingress", "Egress"]);
    let ingress = np["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 2, "proxy and admin only (no console)");
    assert_eq!(ingress[0]["ports"][0]["port"], "proxy");
    let proxy_from = ingress[0]["from"].as_array().unwrap();
    assert_eq!(
        proxy_from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "test",
        "the test pod reaches the proxy"
    );
    assert_eq!(
        proxy_from[1]["namespaceSelector"]["matchLabels"]["warden.example.com/agents"],
        "true"
    );
    assert_eq!(ingress[1]["ports"][0]["port"], "admin");
    let admin_from = ingress[1]["from"].as_array().unwrap();
    assert_eq!(
        admin_from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "test"
    );
    assert_eq!(
        admin_from[1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    let egress = np["spec"]["egress"].as_array().unwrap();
    // DNS first, to the cluster DNS only.
    assert_eq!(
        egress[0]["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
        "kube-dns"
    );
    let dns_ports: Vec<(u64, &str)> = egress[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["port"].as_u64().unwrap(), p["protocol"].as_str().unwrap()))
        .collect();
    assert_eq!(dns_ports, [(53, "UDP"), (53, "TCP")]);
    // Then exactly the declared destinations, each with its ports.
    let declared: Vec<(String, Vec<u64>)> = egress[1..]
        .iter()
        .map(|rule| {
            let to = rule["to"].as_array().unwrap();
            assert_eq!(to.len(), 1, "{rule}");
            (
                to[0]["ipBlock"]["cidr"].as_str().unwrap().to_owned(),
                rule["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["port"].as_u64().unwrap())
                    .collect(),
            )
        })
        .collect();
    let expected: Vec<(String, Vec<u64>)> = [
        ("203.0.113.0/24", 443),
        ("192.0.2.10/32", 443),
        ("10.96.12.0/24", 8200),
        ("198.51.100.10/32", 8088),
        ("10.40.0.0/24", 5432),
    ]
    .into_iter()
    .map(|(c, p)| (c.to_owned(), vec![p]))
    .collect();
    assert_eq!(declared, expected);
    // `except` reaches the ipBlock (postgres case: everything public on 443).
    let pg = helm::case("postgres").await;
    let rules = pg.get("NetworkPolicy", FULLNAME)["spec"]["egress"]
        .as_array()
        .unwrap()
        .clone();
    let public = rules
        .iter()
        .find(|r| r["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0")
        .expect("the upstreams rule");
    assert_eq!(
        strings(&public["to"][0]["ipBlock"]["except"]),
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
    );
    // Off by default.
    let minimal = helm::case("minimal").await;
    assert!(minimal.all("NetworkPolicy").is_empty());
    assert!(minimal.notes.contains("no NetworkPolicy"));
}

#[tokio::test]
async fn vault_kubernetes_auth_alone_mounts_the_service_account_token() {
    let vault = helm::case("vault").await;
    assert_eq!(vault.pod()["automountServiceAccountToken"], true);
    assert_eq!(vault.config["vault"]["auth"]["method"], "kubernetes");
    let mount = named(&vault.warden_container()["volumeMounts"], "vault-ca").clone();
    assert_eq!(mount["mountPath"], "/etc/warden/secrets/vault-ca");
    assert_eq!(mount["readOnly"], true);
    for other in ["minimal", "siem"] {
        let case = helm::case(other).await;
        assert_eq!(case.pod()["automountServiceAccountToken"], false, "{other}");
    }
}

#[tokio::test]
async fn statefulset_keeps_the_audit_log_on_a_volume_claim() {
    let case = helm::case("statefulset").await;
    let sts = case.get("StatefulSet", FULLNAME);
    assert_eq!(sts["spec"]["serviceName"], format!("{FULLNAME}-headless"));
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "data");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "50Gi");
    assert_eq!(claim["spec"]["storageClassName"], "fast-ssd");
    assert!(
        !names(&case.pod()["volumes"]).contains(&"data".to_owned()),
        "the data directory must come from the claim, not an emptyDir"
    );
    assert_eq!(
        case.get("Service", &format!("{FULLNAME}-headless"))["spec"]["clusterIP"],
        "None"
    );
    assert_eq!(case.config["data_dir"], "/var/lib/warden");
    assert!(!case.notes.contains("emptyDir"), "{}", case.notes);
    // acceptNewKeys: the one rollout that goes on with new keys after a restore lost them.
    let accept = |c: &helm::Case| {
        strings(&c.warden_container()["args"]).contains(&"--accept-new-keys".to_owned())
    };
    assert!(accept(&case), "{}", case.warden_container());
    // The Deployment's data directory is an emptyDir with the size limit.
    let minimal = helm::case("minimal").await;
    assert!(!accept(&minimal), "{}", minimal.warden_container());
    let data = named(&minimal.pod()["volumes"], "data").clone();
    assert_eq!(data["emptyDir"]["sizeLimit"], "4Gi");
}

#[tokio::test]
async fn console_is_served_through_ingress_and_httproute() {
    let case = helm::case("console-ingress").await;
    assert_eq!(case.config["console"]["listen"], "0.0.0.0:9443");
    assert_eq!(
        case.config["console"]["oidc"]["client_id"],
        "warden-console"
    );
    let ingress = case.get("Ingress", &format!("{FULLNAME}-console"));
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress["spec"]["rules"][0]["host"], "warden.example.com");
    assert_eq!(
        ingress["spec"]["tls"][0]["secretName"],
        "warden-console-tls"
    );
    let route = case.get("HTTPRoute", &format!("{FULLNAME}-console"));
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "public");
    assert_eq!(strings(&route["spec"]["hostnames"]), ["warden.example.com"]);
    let np = case.get("NetworkPolicy", FULLNAME);
    assert!(
        np["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ports"][0]["port"] == "console"),
        "the console's port is admitted"
    );
    assert!(case.notes.contains("https://warden.example.com"));
}

#[tokio::test]
async fn tls_and_mtls_reach_the_listeners_probes_and_test_hook() {
    let tls = helm::case("tls").await;
    let listen = &tls.config["listen"];
    assert_eq!(listen["tls"]["cert"], "/etc/warden/tls/proxy/tls.crt");
    assert_eq!(listen["tls"]["key"], "/etc/warden/tls/proxy/tls.key");
    assert_eq!(listen["admin_tls"]["cert"], "/etc/warden/tls/admin/tls.crt");
    let c = tls.warden_container();
    assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    assert_eq!(c["livenessProbe"]["httpGet"]["scheme"], "HTTPS");
    let test = tls.get("Pod", &format!("{FULLNAME}-test"));
    let env = test["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("https://gw-warden-admin:9090/readyz"), "{env}");
    assert!(env.contains("https://gw-warden:8080/openai/"), "{env}");

    let mtls = helm::case("mtls").await;
    let listen = &mtls.config["listen"];
    assert_eq!(
        listen["tls"]["client_ca"],
        "/etc/warden/tls/client-ca/ca.crt"
    );
    assert_eq!(listen["tls"]["require_client_cert"], true);
    assert_eq!(
        mtls.warden_container()["readinessProbe"]["httpGet"]["scheme"],
        "HTTP"
    );
    let test = mtls.get("Pod", &format!("{FULLNAME}-test"));
    let env = test["spec"]["containers"][0]["env"].to_string();
    assert!(
        env.contains(r#""name":"REQUIRES_CLIENT_CERT","value":"1""#),
        "{env}"
    );
    assert!(env.contains("https://gw-warden:8080/anthropic/"), "{env}");
    let secret_env = &mtls.warden_container()["env"];
    assert!(
        secret_env
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "ANTHROPIC_API_KEY"
                && e["valueFrom"]["secretKeyRef"]["key"] == "anthropic"),
        "{secret_env}"
    );
}

#[tokio::test]
async fn policies_come_from_the_image_values_or_git_sync() {
    let minimal = helm::case("minimal").await;
    assert_eq!(minimal.config["policy"]["dir"], "/etc/warden/policies");
    assert!(
        minimal
            .find("ConfigMap", &format!("{FULLNAME}-policies"))
            .is_none()
    );

    let values = helm::case("policies-values").await;
    let map = values.get("ConfigMap", &format!("{FULLNAME}-policies"));
    let schema =
        std::fs::read_to_string(warden_e2e::paths::repo_root().join("policies/schema.cedarschema"))
            .unwrap();
    assert_eq!(map["data"]["schema.cedarschema"], schema.as_str());
    assert!(
        map["data"]["support.cedar"]
            .as_str()
            .unwrap()
            .contains("support-small-models-only")
    );
    assert!(
        values.workload()["spec"]["template"]["metadata"]["annotations"]["checksum/policies"]
            .is_string()
    );

    let git = helm::case("gitsync").await;
    assert_eq!(git.config["policy"]["dir"], "/etc/warden/git/current/prod");
    let pod = git.pod();
    let init = &pod["initContainers"][0];
    assert!(strings(&init["args"]).contains(&"--one-time".to_owned()));
    let sidecar = named(&pod["containers"], "git-sync");
    let args = strings(&sidecar["args"]);
    for arg in [
        "--repo=https://git.example.com/security/warden-policies.git",
        "--ref=v3",
        "--period=30s",
    ] {
        assert!(args.contains(&arg.to_owned()), "{args:?}");
    }
    assert_eq!(
        sidecar["envFrom"][0]["secretRef"]["name"],
        "warden-policies-git"
    );
    // Every image of the release pinned by digest: a tag can be moved to other content.
    let git_sync = format!(
        "registry.k8s.io/git-sync/git-sync@sha256:{}",
        "2".repeat(64)
    );
    assert_eq!(sidecar["image"], git_sync.as_str());
    assert_eq!(init["image"], git_sync.as_str());
    assert_eq!(
        named(&pod["containers"], "warden")["image"],
        format!("ghcr.io/warden-gateway/warden@sha256:{}", "1".repeat(64)).as_str()
    );
    let test = &git.get("Pod", &format!("{FULLNAME}-test"))["spec"]["containers"][0];
    assert_eq!(
        test["image"],
        format!("docker.io/curlimages/curl@sha256:{}", "3".repeat(64)).as_str()
    );
}

#[tokio::test]
async fn rendered_configuration_passes_warden_check_in_every_case() {
    let rendered = helm::render(&[]).await.unwrap();
    for case in rendered.cases.values() {
        let files = PodFiles::lay_out(case, None).unwrap();
        let out = files.check().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("configuration is valid"),
            "{}: warden check refused the rendered configuration:\n{}\nstdout:\n{stdout}\nstderr:\n{}",
            case.name,
            case.warden_yaml(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn every_audit_record_names_the_pod_that_wrote_it() {
    let case = helm::case("minimal").await;
    assert_eq!(
        case.config["audit"]["replica_id"],
        serde_json::json!({"env": "WARDEN_REPLICA_ID"})
    );
    let env = &case.warden_container()["env"];
    assert_eq!(
        named(env, "WARDEN_REPLICA_ID")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name",
        "the pod's full name, from the downward API"
    );
}

#[tokio::test]
async fn a_deployment_bounds_its_audit_log_below_the_emptydir_limit() {
    // Three quarters of the default 4Gi: the kubelet never evicts the pod for its audit log;
    // when_full stays `refuse`, so an unshipped tail is never deleted to make room.
    let minimal = helm::case("minimal").await;
    assert_eq!(
        minimal.config["audit"]["retention"],
        serde_json::json!({"max_bytes": 3_221_225_472_u64})
    );
    assert_eq!(
        named(&minimal.pod()["volumes"], "data")["emptyDir"]["sizeLimit"],
        "4Gi"
    );
    // A volume claim is sized by its owner: no bound is added.
    let statefulset = helm::case("statefulset").await;
    assert!(
        statefulset.config["audit"].get("retention").is_none(),
        "{}",
        statefulset.config["audit"]
    );
}

#[tokio::test]
async fn rendered_configuration_serves_the_probes_and_refuses_unauthenticated_agents() {
    let case = helm::case("minimal").await;
    let (proxy, admin) = (free_port().unwrap(), free_port().unwrap());
    let files = PodFiles::lay_out(&case, Some((proxy, admin))).unwrap();
    let mut cmd = files.command();
    cmd.arg("serve").arg("--config").arg(&files.config);
    let mut warden = Proc::spawn("warden", cmd).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let c = case.warden_container();
    let ready_path = c["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
    let live_path = c["livenessProbe"]["httpGet"]["path"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            warden.try_exit_status().is_none(),
            "warden exited:\n{}",
            warden.output()
        );
        let ready = http
            .get(format!("http://127.0.0.1:{admin}{ready_path}"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready within 30 s:\n{}",
            warden.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let live = http
        .get(format!("http://127.0.0.1:{admin}{live_path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    // What the helm test hook asks, with the path it uses.
    let test = &case.get("Pod", &format!("{FULLNAME}-test"))["spec"]["containers"][0];
    let proxy_url = named(&test["env"], "PROXY_URL")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = proxy_url
        .split_once(":8080")
        .map(|(_, p)| p.to_owned())
        .unwrap();
    let refused = http
        .get(format!("http://127.0.0.1:{proxy}{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "{path}: {:?}", refused.text().await);
    // The drain the preStop hook precedes: SIGTERM, then a clean exit well within the grace.
    warden.signal(libc::SIGTERM).unwrap();
    let grace = case.pod()["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(grace), warden.wait()).await;
    let status = stopped
        .unwrap_or_else(|_| panic!("warden did not stop within {grace} s"))
        .unwrap();
    assert!(status.success(), "{status}:\n{}", warden.output());
}

#[tokio::test]
async fn bad_values_are_refused_with_a_clear_message() {
    let files = helm::yaml_files(&helm::helm_dir("bad")).unwrap();
    assert!(files.len() >= 15, "{files:?}");
    let answers = helm::refusals(&files).await.unwrap();
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: no `# expect: ` line"));
        let (refused, message) = &answers[name];
        assert!(refused, "{name}: accepted");
        assert!(
            message.contains(expect),
            "{name}: refused with\n{message}\nwhich does not say: {expect}"
        );
    }
}

#[test]
fn dockerfile_builds_a_nonroot_shellless_image_with_the_policies() {
    let root = warden_e2e::paths::repo_root();
    let text = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    // The base images are build arguments (a build pins them by digest), declared before the
    // first stage so that a FROM can use them, their defaults the tags.
    assert_eq!(froms[0], "FROM ${BUILD_IMAGE} AS build");
    assert_eq!(froms[1], "FROM ${RUNTIME_IMAGE}");
    let first_stage = lines.iter().position(|l| *l == froms[0]).unwrap();
    let default = |name: &str| {
        lines[..first_stage]
            .iter()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("no ARG {name}= before the first FROM"))
    };
    assert!(
        default("BUILD_IMAGE").starts_with("docker.io/library/rust:1-"),
        "{}",
        default("BUILD_IMAGE")
    );
    assert_eq!(
        default("RUNTIME_IMAGE"),
        "gcr.io/distroless/cc-debian12:nonroot"
    );
    let runtime = &lines[lines.iter().position(|l| *l == froms[1]).unwrap()..];
    assert!(
        runtime.iter().all(|l| !l.starts_with("RUN ")),
        "the runtime stage has no shell to RUN with"
    );
    assert!(runtime.contains(&"USER 65532:65532"), "{runtime:?}");
    let entry = runtime
        .iter()
        .find(|l| l.starts_with("ENTRYPOINT "))
        .unwrap();
    assert_eq!(*entry, r#"ENTRYPOINT ["/usr/local/bin/warden"]"#);
    assert!(
        text.contains("cargo build --release --locked -p warden"),
        "the release build of the package the tests run"
    );
    let copy = format!(
        "COPY {} /etc/warden/policies/",
        helm::IMAGE_POLICIES
            .iter()
            .map(|f| format!("policies/{f}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(runtime.contains(&copy.as_str()), "{copy}");
    // The chart's user is the image's.
    let values = std::fs::read_to_string(root.join("charts/warden/values.yaml")).unwrap();
    assert!(values.contains("runAsUser: 65532"));
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    for excluded in ["**/target", "**/node_modules", ".git"] {
        assert!(ignore.lines().any(|l| l == excluded), "{excluded}");
    }
}

#[tokio::test]
async fn deploy_doc_values_reference_is_generated_from_the_schema() {
    let (current, said) = helm::reference_is_current().await.unwrap();
    assert!(current, "{said}");
}
