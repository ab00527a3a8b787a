//! The Helm chart (`deploy/helm/nacos-reconciler`) against the local testbed: it lints, its rendered
//! objects are what the operator needs (and are accepted by the real API server), it installs, and the
//! ServiceAccount it creates can do what the operator does and nothing more.
//!
//! Needs the testbed (`HELM`, `KUBECTL`, `KUBECONFIG` from `tests/testbed.sh up`); fails loudly without.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{repo_root, testbed_env, unique};
use serde_json::Value;

fn chart() -> PathBuf {
    repo_root().join("deploy/helm/nacos-reconciler")
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` (with `stdin` fed to it), returns its output whatever the exit status.
fn output(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("`{what}`: {e}"))
}

/// Runs `cmd`, panics with its stderr unless it succeeds; returns stdout.
fn ok(cmd: &mut Command, stdin: Option<&str>) -> String {
    let what = describe(cmd);
    let out = output(cmd, stdin);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`{what}` failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn helm() -> Command {
    let mut c = Command::new(testbed_env("HELM"));
    c.env("KUBECONFIG", testbed_env("KUBECONFIG"));
    c
}

fn kubectl() -> Command {
    let mut c = Command::new(testbed_env("KUBECTL"));
    c.args(["--kubeconfig", &testbed_env("KUBECONFIG")]);
    c
}

/// `helm template` of the chart with `--set` values; parsed into its objects.
fn render(release: &str, namespace: &str, sets: &[&str]) -> Vec<Value> {
    let yaml = render_yaml(release, namespace, sets, false);
    objects(&yaml)
}

fn render_yaml(release: &str, namespace: &str, sets: &[&str], include_crds: bool) -> String {
    let mut cmd = helm();
    cmd.args(["template", release])
        .arg(chart())
        .args(["--namespace", namespace]);
    if include_crds {
        cmd.arg("--include-crds");
    }
    for s in sets {
        cmd.args(["--set", s]);
    }
    ok(&mut cmd, None)
}

fn objects(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|doc| {
            let v = Value::deserialize(doc).expect("rendered YAML parses");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found = find(objs, kind);
    assert_eq!(found.len(), 1, "expected exactly one {kind}, got {found:?}");
    found[0]
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// (apiGroup, resource, verb, resourceNames) grants of a Role or ClusterRole.
fn grants(role: &Value) -> Vec<(String, String, String, Vec<String>)> {
    let mut out = vec![];
    for rule in role["rules"].as_array().expect("rules") {
        for g in strs(&rule["apiGroups"]) {
            for r in strs(&rule["resources"]) {
                for v in strs(&rule["verbs"]) {
                    out.push((g.clone(), r.clone(), v, strs(&rule["resourceNames"])));
                }
            }
        }
    }
    out
}

fn has(
    grants: &[(String, String, String, Vec<String>)],
    group: &str,
    res: &str,
    verb: &str,
) -> bool {
    grants
        .iter()
        .any(|(g, r, v, _)| g == group && r == res && v == verb)
}

fn create_namespace(name: &str) {
    ok(kubectl().args(["create", "namespace", name]), None);
}

/// Uninstalls the release and deletes the namespaces when the test ends, passed or not.
struct Cleanup {
    release: Option<(String, String)>,
    namespaces: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((release, ns)) = &self.release {
            let _ = output(
                helm().args(["uninstall", release, "-n", ns, "--wait"]),
                None,
            );
        }
        for ns in &self.namespaces {
            let _ = output(
                kubectl().args(["delete", "namespace", ns, "--wait=false"]),
                None,
            );
        }
    }
}

/// Removes a directory of the test's (the kubeconfig holding a token) when the test ends.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn chart_lints() {
    for sets in [
        vec![],
        vec!["watchNamespaces={a,b}"],
        vec![
            "watchNamespaces=a",
            "replicas=1",
            "leaderElection.enabled=false",
        ],
        vec![
            "serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
            "grafanaDashboard.enabled=true",
            "logFormat=text",
            "extraEnv[0].name=RUST_BACKTRACE",
            "extraEnv[0].value=full",
        ],
    ] {
        let mut cmd = helm();
        cmd.args(["lint", "--strict"]).arg(chart());
        for s in &sets {
            cmd.args(["--set", s]);
        }
        let out = ok(&mut cmd, None);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "helm lint {sets:?}:\n{out}"
        );
    }
}

#[test]
fn chart_crd_is_the_generated_one() {
    let in_chart = std::fs::read_to_string(chart().join("crds/nacosbinding.yaml"))
        .expect("the chart ships crds/nacosbinding.yaml");
    assert_eq!(in_chart, nacos_reconciler::crd::crd_yaml());
    let rendered = render_yaml("crd", "default", &[], true);
    assert!(
        find(&objects(&rendered), "CustomResourceDefinition").len() == 1,
        "--include-crds renders the CRD"
    );
}

#[test]
fn rendered_deployment_is_hardened_and_wired() {
    let objs = render("r1", "ops", &["logFormat=text", "logLevel=debug"]);
    let d = one(&objs, "Deployment");
    assert_eq!(d["metadata"]["namespace"], "ops");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        strs(&c["args"]),
        [
            "run",
            "--metrics-addr",
            "0.0.0.0:8080",
            "--log-format",
            "text",
            "--log-level",
            "debug",
            "--leader-elect"
        ]
    );
    let env = c["env"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
    assert_eq!(
        var("POD_NAME").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        var("POD_NAMESPACE").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert!(var("WATCH_NAMESPACES").is_none(), "all namespaces: unset");
    assert_eq!(var("LEASE_NAME").unwrap()["value"], "r1-nacos-reconciler");
    assert_eq!(c["ports"][0]["name"], "metrics");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        anti["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        anti["podAffinityTerm"]["labelSelector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );

    // Defaults: PDB on (2 replicas), the optional objects off.
    assert_eq!(one(&objs, "PodDisruptionBudget")["spec"]["minAvailable"], 1);
    assert!(find(&objs, "ServiceMonitor").is_empty());
    assert!(find(&objs, "NetworkPolicy").is_empty());
    let svc = one(&objs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);

    // Values reach the pod.
    let objs = render(
        "r2",
        "ops",
        &[
            "replicas=1",
            "leaderElection.enabled=false",
            "watchNamespaces={shop,pay}",
            "extraEnv[0].name=RUST_BACKTRACE",
            "extraEnv[0].value=full",
            "image.repository=registry.example/nacos-reconciler",
            "image.tag=v9",
            "nodeSelector.pool=ops",
            "podAnnotations.a=b",
            "serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
        ],
    );
    let d = one(&objs, "Deployment");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example/nacos-reconciler:v9");
    assert!(!strs(&c["args"]).contains(&"--leader-elect".to_string()));
    let env = c["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "WATCH_NAMESPACES" && e["value"] == "shop,pay"));
    assert!(env
        .iter()
        .any(|e| e["name"] == "RUST_BACKTRACE" && e["value"] == "full"));
    assert!(!env.iter().any(|e| e["name"] == "LEASE_NAME"));
    assert_eq!(d["spec"]["template"]["spec"]["nodeSelector"]["pool"], "ops");
    assert_eq!(d["spec"]["template"]["metadata"]["annotations"]["a"], "b");
    assert!(
        find(&objs, "PodDisruptionBudget").is_empty(),
        "no PDB for 1 replica"
    );
    let sm = one(&objs, "ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let np = one(&objs, "NetworkPolicy");
    assert_eq!(strs(&np["spec"]["policyTypes"]), ["Ingress"]);
    let ingress = np["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0]["ports"].as_array().unwrap().len(), 1);
    assert_eq!(ingress[0]["ports"][0]["port"], 8080);
}

#[test]
fn rendered_grafana_dashboard_is_the_repositorys_and_off_by_default() {
    assert!(find(&render("r", "ops", &[]), "ConfigMap").is_empty());
    let objs = render(
        "r",
        "ops",
        &[
            "grafanaDashboard.enabled=true",
            "grafanaDashboard.annotations.grafana_folder=Kubernetes",
        ],
    );
    let cm = one(&objs, "ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "ops");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        cm["metadata"]["annotations"]["grafana_folder"],
        "Kubernetes"
    );
    let shipped: Value = serde_json::from_str(
        cm["data"]["nacos-reconciler.json"]
            .as_str()
            .expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let file = std::fs::read_to_string(repo_root().join("deploy/grafana/nacos-reconciler.json"))
        .expect("deploy/grafana/nacos-reconciler.json");
    assert_eq!(shipped, serde_json::from_str::<Value>(&file).unwrap());
}

#[test]
fn rendered_rbac_is_least_privilege() {
    // Every namespace: one ClusterRole; secrets only `get`.
    let objs = render("r", "ops", &[]);
    let cr = one(&objs, "ClusterRole");
    let g = grants(cr);
    for (group, res, verb) in [
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "nodes", "get"),
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("discovery.k8s.io", "endpointslices", "list"),
        ("discovery.k8s.io", "endpointslices", "watch"),
        ("nacos-reconciler.io", "nacosbindings", "get"),
        ("nacos-reconciler.io", "nacosbindings", "list"),
        ("nacos-reconciler.io", "nacosbindings", "watch"),
        ("nacos-reconciler.io", "nacosbindings/status", "get"),
        ("nacos-reconciler.io", "nacosbindings/status", "patch"),
        ("nacos-reconciler.io", "nacosbindings/status", "update"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
        ("", "secrets", "get"),
    ] {
        assert!(has(&g, group, res, verb), "missing {verb} {group}/{res}");
    }
    assert_eq!(g.len(), 17, "nothing beyond the list above: {g:?}");
    assert!(g.iter().all(|(_, _, v, _)| v != "*"));
    // Leader election: a Role in the release namespace, get/update only on the Lease's name.
    let roles = find(&objs, "Role");
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0]["metadata"]["namespace"], "ops");
    let lg = grants(roles[0]);
    assert_eq!(lg.len(), 3, "{lg:?}");
    for (group, res, verb, names) in &lg {
        assert_eq!(
            (group.as_str(), res.as_str()),
            ("coordination.k8s.io", "leases")
        );
        match verb.as_str() {
            "create" => assert!(names.is_empty()),
            "get" | "update" => assert_eq!(names, &["r-nacos-reconciler".to_string()]),
            v => panic!("unexpected lease verb {v}"),
        }
    }

    // Watched namespaces: cluster-wide only nodes and reading bindings; the rest in per-namespace Roles.
    let objs = render("r", "ops", &["watchNamespaces={shop,pay}"]);
    let g = grants(one(&objs, "ClusterRole"));
    assert_eq!(g.len(), 6, "{g:?}");
    assert!(g
        .iter()
        .all(|(_, r, v, _)| (r == "nodes" || r == "nacosbindings")
            && ["get", "list", "watch"].contains(&v.as_str())));
    for ns in ["shop", "pay"] {
        let role = find(&objs, "Role")
            .into_iter()
            .find(|r| r["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("a Role in {ns}"));
        let g = grants(role);
        assert!(has(&g, "", "pods", "watch") && has(&g, "", "secrets", "get"));
        assert!(has(&g, "events.k8s.io", "events", "create"));
        assert!(!has(&g, "", "secrets", "list"));
        assert!(find(&objs, "RoleBinding")
            .iter()
            .any(|b| b["metadata"]["namespace"] == ns && b["subjects"][0]["namespace"] == "ops"));
    }
    // A single watched namespace is watched with a namespaced API: bindings are read there only.
    let objs = render(
        "r",
        "ops",
        &["watchNamespaces=shop", "leaderElection.enabled=false"],
    );
    let g = grants(one(&objs, "ClusterRole"));
    assert!(g.iter().all(|(_, r, _, _)| r == "nodes"), "{g:?}");
    let roles = find(&objs, "Role");
    assert_eq!(roles.len(), 1, "no lease Role without leader election");
    assert!(has(
        &grants(roles[0]),
        "nacos-reconciler.io",
        "nacosbindings",
        "list"
    ));
}

#[test]
fn rendered_chart_is_accepted_by_the_api_server() {
    let ns = unique("helm-dry");
    let (shop, pay) = (format!("{ns}-shop"), format!("{ns}-pay"));
    let _cleanup = Cleanup {
        release: None,
        namespaces: vec![ns.clone(), shop.clone(), pay.clone()],
    };
    for n in [&ns, &shop, &pay] {
        create_namespace(n);
    }
    let watch = format!("watchNamespaces={{{shop},{pay}}}");
    for sets in [
        vec![],
        vec![watch.as_str(), "networkPolicy.enabled=true"],
        vec![
            "replicas=1",
            "leaderElection.enabled=false",
            "grafanaDashboard.enabled=true",
        ],
    ] {
        let yaml = render_yaml("dry", &ns, &sets, true);
        let kinds: Vec<String> = objects(&yaml)
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or_default().to_lowercase())
            .collect();
        let out = ok(
            kubectl().args(["apply", "--dry-run=server", "-f", "-"]),
            Some(&yaml),
        );
        for kind in &kinds {
            assert!(
                out.lines()
                    .any(|l| l.starts_with(kind.as_str()) && l.ends_with("(server dry run)")),
                "{kind} not accepted by the API server ({sets:?}):\n{out}"
            );
        }
        assert!(kinds.contains(&"deployment".to_string()));
    }
}

/// A kubeconfig that authenticates with `token` only (no client certificate).
fn token_kubeconfig(dir: &Path, token: &str) -> PathBuf {
    let jp = |path: &str| {
        ok(
            kubectl().args([
                "config",
                "view",
                "--minify",
                "--raw",
                "-o",
                &format!("jsonpath={{{path}}}"),
            ]),
            None,
        )
    };
    let server = jp(".clusters[0].cluster.server");
    let ca_file = jp(".clusters[0].cluster.certificate-authority");
    let ca_data = jp(".clusters[0].cluster.certificate-authority-data");
    let ca = if ca_data.is_empty() {
        format!("certificate-authority: {ca_file:?}")
    } else {
        format!("certificate-authority-data: {ca_data:?}")
    };
    let path = dir.join("sa.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: t, cluster: {{server: {server:?}, {ca}}}}}]\n\
             users: [{{name: sa, user: {{token: {token:?}}}}}]\n\
             contexts: [{{name: t, context: {{cluster: t, user: sa}}}}]\n\
             current-context: t\n"
        ),
    )
    .unwrap();
    path
}

/// The chart's ServiceAccount, seen through a bearer token from the TokenRequest API.
struct AsServiceAccount {
    kubeconfig: PathBuf,
}

impl AsServiceAccount {
    fn new(sa: &str, ns: &str) -> Self {
        let token = ok(
            kubectl().args(["create", "token", sa, "-n", ns, "--duration", "10m"]),
            None,
        );
        let dir = std::env::temp_dir().join(unique("helm-sa"));
        std::fs::create_dir_all(&dir).unwrap();
        let me = Self {
            kubeconfig: token_kubeconfig(&dir, token.trim()),
        };
        let who = ok(
            me.kubectl().args([
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ]),
            None,
        );
        assert_eq!(who, format!("system:serviceaccount:{ns}:{sa}"));
        me
    }

    fn kubectl(&self) -> Command {
        let mut c = Command::new(testbed_env("KUBECTL"));
        c.arg("--kubeconfig").arg(&self.kubeconfig);
        c
    }

    /// `kubectl auth can-i` as the ServiceAccount: "yes" (exit 0) or "no" (exit 1).
    fn can(&self, args: &[&str]) -> bool {
        let mut cmd = self.kubectl();
        cmd.args(["auth", "can-i"]).args(args);
        let out = output(&mut cmd, None);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match (out.status.code(), answer.as_str()) {
            (Some(0), "yes") => true,
            (Some(1), "no") => false,
            _ => panic!(
                "kubectl auth can-i {args:?}: {} {answer}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    fn assert_can(&self, checks: &[&[&str]]) {
        for args in checks {
            assert!(
                self.can(args),
                "the ServiceAccount should be allowed: can-i {args:?}"
            );
        }
    }

    fn assert_cannot(&self, checks: &[&[&str]]) {
        for args in checks {
            assert!(
                !self.can(args),
                "the ServiceAccount must NOT be allowed: can-i {args:?}"
            );
        }
    }

    /// Runs a real request as the ServiceAccount; returns (succeeded, stderr).
    fn request(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = self.kubectl();
        cmd.args(args);
        let out = output(&mut cmd, None);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn json(cmd: &mut Command) -> Value {
    serde_json::from_str(&ok(cmd, None)).expect("kubectl -o json")
}

const BINDING: &str = r#"{"apiVersion": "nacos-reconciler.io/v1alpha1", "kind": "NacosBinding",
 "metadata": {"name": "orders"},
 "spec": {"nacos": {"serverAddr": ["http://nacos.invalid:8848"]},
          "services": [{"name": "orders"}],
          "pods": {"selector": {"matchLabels": {"app": "orders"}}},
          "policy": {"dryRun": true}}}"#;

#[test]
fn helm_install_runs_two_spread_replicas_with_a_least_privilege_identity() {
    let ns = unique("helm-op");
    let app = format!("{ns}-app");
    // Unique: the ClusterRole and its binding are named after the release.
    let release = unique("nr");
    let _cleanup = Cleanup {
        release: Some((release.clone(), ns.clone())),
        namespaces: vec![ns.clone(), app.clone()],
    };
    create_namespace(&app);
    let out = ok(
        helm()
            .args(["install", &release])
            .arg(chart())
            .args(["--namespace", &ns, "--create-namespace"])
            .args(["--wait", "--timeout", "180s"]),
        None,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    let crd = json(kubectl().args([
        "get",
        "crd",
        "nacosbindings.nacos-reconciler.io",
        "-o",
        "json",
    ]));
    assert_eq!(crd["spec"]["names"]["kind"], "NacosBinding");

    // Two replicas, Running on KWOK nodes, on different nodes (preferred anti-affinity), with the
    // pod's name from the downward API.
    let deployment = format!("{release}-nacos-reconciler");
    let pods = wait_until(
        "2 Running pods of the release",
        Duration::from_secs(120),
        || {
            let list = json(kubectl().args([
                "get",
                "pods",
                "-n",
                &ns,
                "-l",
                &format!("app.kubernetes.io/instance={release}"),
                "-o",
                "json",
            ]));
            let items = list["items"].as_array()?.clone();
            (items.len() == 2 && items.iter().all(|p| p["status"]["phase"] == "Running"))
                .then_some(items)
        },
    );
    let nodes: std::collections::BTreeSet<&str> = pods
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(nodes.len(), 2, "replicas spread over nodes: {nodes:?}");
    for p in &pods {
        let c = &p["spec"]["containers"][0];
        assert_eq!(p["spec"]["serviceAccountName"], deployment);
        assert!(c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "POD_NAME"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"));
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    }
    let d = json(kubectl().args(["get", "deployment", &deployment, "-n", &ns, "-o", "json"]));
    assert_eq!(d["status"]["readyReplicas"], 2);
    let pdb = json(kubectl().args(["get", "pdb", &deployment, "-n", &ns, "-o", "json"]));
    assert_eq!(pdb["spec"]["minAvailable"], 1);

    // RBAC, through a real token of the chart's ServiceAccount.
    let sa = AsServiceAccount::new(&deployment, &ns);
    let lease = format!("leases.coordination.k8s.io/{deployment}");
    sa.assert_can(&[
        &["watch", "pods", "-A"],
        &["list", "pods", "-A"],
        &["get", "pods", "-n", &app],
        &["watch", "nodes"],
        &["list", "nodes"],
        &["watch", "endpointslices.discovery.k8s.io", "-A"],
        &["list", "nacosbindings.nacos-reconciler.io", "-A"],
        &["watch", "nacosbindings.nacos-reconciler.io", "-A"],
        &[
            "patch",
            "nacosbindings.nacos-reconciler.io",
            "--subresource=status",
            "-n",
            &app,
        ],
        &[
            "update",
            "nacosbindings.nacos-reconciler.io",
            "--subresource=status",
            "-n",
            &app,
        ],
        &["create", "events.events.k8s.io", "-n", &app],
        &["patch", "events.events.k8s.io", "-n", &app],
        &["get", "secrets", "-n", &app],
        &["get", &lease, "-n", &ns],
        &["update", &lease, "-n", &ns],
        &["create", "leases.coordination.k8s.io", "-n", &ns],
    ]);
    sa.assert_cannot(&[
        &["list", "secrets", "-A"],
        &["list", "secrets", "-n", &app],
        &["watch", "secrets", "-A"],
        &["create", "secrets", "-n", &app],
        &["create", "pods", "-n", &app],
        &["delete", "pods", "-n", &app],
        &["patch", "pods", "-n", &app],
        &["update", "pods", "-n", &app],
        &["delete", "pods", "-A"],
        &["create", "pods", "--subresource=eviction", "-n", &app],
        &["patch", "nodes"],
        &["delete", "nodes"],
        &["patch", "nacosbindings.nacos-reconciler.io", "-n", &app],
        &["create", "nacosbindings.nacos-reconciler.io", "-n", &app],
        &["delete", "nacosbindings.nacos-reconciler.io", "-n", &app],
        &["delete", "events.events.k8s.io", "-n", &app],
        &[
            "update",
            "leases.coordination.k8s.io/someone-elses-lease",
            "-n",
            &ns,
        ],
        &[
            "get",
            "leases.coordination.k8s.io/someone-elses-lease",
            "-n",
            &ns,
        ],
        &["create", "leases.coordination.k8s.io", "-n", &app],
        &[
            "create",
            "serviceaccounts",
            "--subresource=token",
            "-n",
            &ns,
        ],
        &[
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            "-n",
            &ns,
        ],
        &["*", "*"],
    ]);

    // The same, as real requests.
    ok(
        kubectl().args(["apply", "-n", &app, "-f", "-"]),
        Some(BINDING),
    );
    let (listed, err) = sa.request(&["get", "pods", "-A"]);
    assert!(listed, "listing pods as the ServiceAccount: {err}");
    let (listed, err) = sa.request(&["get", "secrets", "-A"]);
    assert!(
        !listed && err.contains("Forbidden"),
        "listing secrets must be forbidden: {err}"
    );
    let (patched, err) = sa.request(&[
        "patch",
        "nacosbinding",
        "orders",
        "-n",
        &app,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"observedGeneration":1}}"#,
    ]);
    assert!(patched, "patching the status as the ServiceAccount: {err}");
    let (patched, err) = sa.request(&[
        "patch",
        "nacosbinding",
        "orders",
        "-n",
        &app,
        "--type=merge",
        "-p",
        r#"{"spec":{"resyncSeconds":61}}"#,
    ]);
    assert!(
        !patched && err.contains("Forbidden"),
        "patching the spec must be forbidden: {err}"
    );
    let victim = &pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let (deleted, err) = sa.request(&["delete", "pod", victim, "-n", &ns, "--wait=false"]);
    assert!(
        !deleted && err.contains("Forbidden"),
        "deleting a pod must be forbidden: {err}"
    );
    let event = format!(
        r#"{{"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {{"name": "helm-rbac-test", "namespace": "{app}"}},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "nacos-reconciler",
            "reportingInstance": "test", "action": "Test", "reason": "Test", "type": "Normal",
            "regarding": {{"kind": "NacosBinding", "namespace": "{app}", "name": "orders"}}}}"#
    );
    let mut cmd = sa.kubectl();
    cmd.args(["create", "-f", "-"]);
    ok(&mut cmd, Some(&event));
}

#[test]
fn helm_install_with_watched_namespaces_grants_nothing_cluster_wide_but_nodes_and_bindings() {
    let ns = unique("helm-nsop");
    let (shop, pay, other) = (
        format!("{ns}-shop"),
        format!("{ns}-pay"),
        format!("{ns}-other"),
    );
    // Unique: the ClusterRole and its binding are named after the release.
    let release = unique("nr");
    let _cleanup = Cleanup {
        release: Some((release.clone(), ns.clone())),
        namespaces: vec![ns.clone(), shop.clone(), pay.clone(), other.clone()],
    };
    for n in [&shop, &pay, &other] {
        create_namespace(n);
    }
    let out = ok(
        helm()
            .args(["install", &release])
            .arg(chart())
            .args(["--namespace", &ns, "--create-namespace"])
            .args(["--set", &format!("watchNamespaces={{{shop},{pay}}}")])
            .args(["--wait", "--timeout", "180s"]),
        None,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    let deployment = format!("{release}-nacos-reconciler");
    let d = json(kubectl().args(["get", "deployment", &deployment, "-n", &ns, "-o", "json"]));
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    assert!(env
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "WATCH_NAMESPACES" && e["value"] == format!("{shop},{pay}")));

    let sa = AsServiceAccount::new(&deployment, &ns);
    for watched in [&shop, &pay] {
        sa.assert_can(&[
            &["watch", "pods", "-n", watched],
            &["list", "endpointslices.discovery.k8s.io", "-n", watched],
            &["get", "secrets", "-n", watched],
            &[
                "patch",
                "nacosbindings.nacos-reconciler.io",
                "--subresource=status",
                "-n",
                watched,
            ],
            &["create", "events.events.k8s.io", "-n", watched],
        ]);
    }
    sa.assert_can(&[
        &["watch", "nodes"],
        &["list", "nacosbindings.nacos-reconciler.io", "-A"],
    ]);
    sa.assert_cannot(&[
        &["list", "pods", "-A"],
        &["watch", "pods", "-n", &other],
        &["get", "secrets", "-n", &other],
        &["get", "secrets", "-A"],
        &["list", "secrets", "-n", &shop],
        &[
            "patch",
            "nacosbindings.nacos-reconciler.io",
            "--subresource=status",
            "-n",
            &other,
        ],
        &["create", "events.events.k8s.io", "-n", &other],
        &["delete", "pods", "-n", &shop],
        &["patch", "pods", "-n", &shop],
    ]);
}

/// The operator, run as a process with a TokenRequest token of the chart's ServiceAccount and the
/// args and environment of the chart's Deployment (leader election on, JSON logs), completes the core
/// scenario: the chart's RBAC is sufficient (Secret `get` included), not just minimal.
async fn the_operator_as_the_charts_service_account_takes_a_removed_pods_instance_offline(
    server: common::Server,
) {
    use common::{
        binding_events, condition_is, create_binding, deploy, kube_client, scale_down,
        wait_binding, wait_for, Operator, Registration,
    };
    let ns = unique("helm-run");
    let app = format!("{ns}-app");
    let release = unique("nr");
    let _cleanup = Cleanup {
        release: Some((release.clone(), ns.clone())),
        namespaces: vec![ns.clone(), app.clone()],
    };
    create_namespace(&app);
    // One watched namespace, as in a namespaced install: the operator's grants there are a Role.
    let out = ok(
        helm()
            .args(["install", &release])
            .arg(chart())
            .args(["--namespace", &ns, "--create-namespace"])
            .args(["--set", &format!("watchNamespaces={{{app}}}")]),
        None,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    let full = format!("{release}-nacos-reconciler");

    // The chart's container args and environment, as the Deployment in the cluster has them.
    let d = json(kubectl().args(["get", "deployment", &full, "-n", &ns, "-o", "json"]));
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let chart_args = strs(&c["args"]);
    assert!(chart_args.contains(&"--leader-elect".to_string()));
    let mut args: Vec<String> = vec![];
    let mut it = chart_args.iter().skip(1); // "run"
    while let Some(a) = it.next() {
        if a == "--metrics-addr" {
            it.next(); // a free local port instead
            continue;
        }
        args.push(a.clone());
    }
    let pod_name = format!("{release}-replica-0");
    let mut envs = vec![];
    for e in c["env"].as_array().expect("env") {
        let name = e["name"].as_str().unwrap().to_string();
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => pod_name.clone(),
            Some("metadata.namespace") => ns.clone(),
            Some(other) => panic!("unexpected fieldRef {other}"),
            None => e["value"].as_str().expect("env value").to_string(),
        };
        envs.push((name, value));
    }
    assert!(envs
        .iter()
        .any(|(k, v)| k == "WATCH_NAMESPACES" && v == &app));

    // Authenticated only by a TokenRequest token of the chart's ServiceAccount.
    let token = ok(
        kubectl().args(["create", "token", &full, "-n", &ns, "--duration", "20m"]),
        None,
    );
    let dir = std::env::temp_dir().join(unique("helm-run"));
    std::fs::create_dir_all(&dir).unwrap();
    let _dir = RemoveDir(dir.clone());
    let kubeconfig = token_kubeconfig(&dir, token.trim());
    args.push("--kubeconfig".into());
    args.push(kubeconfig.to_string_lossy().into_owned());

    // The core scenario on a server with auth on: credentials from a Secret the binding names.
    let client = kube_client().await;
    let pods = deploy(&client, &app, "orders", 3, None).await;
    let svc = format!("{app}-orders");
    for (_, ip) in &pods {
        server
            .register_persistent(&Registration::new(&svc, ip, 8080))
            .await;
    }
    server.create_credentials(&client, &app).await;
    create_binding(
        &client,
        &app,
        "orders",
        serde_json::json!({
            "nacos": server.binding_nacos(),
            "services": [{"name": svc}],
            "pods": {"selector": {"matchLabels": {"app": "orders"}}},
            "policy": {"gracePeriodSeconds": 0, "maxRemovals": "100%"},
            "resyncSeconds": 5
        }),
    )
    .await;
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (operator, log) =
        Operator::start_custom_env(&format!("operator-sa-{app}"), &arg_refs, &envs);
    wait_binding(&client, &app, "orders", "Ready with 3 live", |s| {
        condition_is(s, "Ready", "True") && s.instances.live == 3
    })
    .await;
    let victim = scale_down(&client, &app, "orders", 2).await;
    wait_for(
        "the removed pod's instance offline",
        Duration::from_secs(40),
        || async {
            server
                .held(&svc, &victim, 8080)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    let status = wait_binding(&client, &app, "orders", "removedTotal 1, 2 live", |s| {
        s.removed_total == 1 && s.instances.live == 2 && condition_is(s, "Ready", "True")
    })
    .await;
    assert_eq!(status.instances.total, 2, "{status:#?}");
    let event = wait_for("a Deregistered Event", Duration::from_secs(30), || {
        let client = client.clone();
        let app = app.clone();
        async move {
            binding_events(&client, &app, "orders")
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("Deregistered"))
        }
    })
    .await;
    assert_eq!(event.reporting_instance.as_deref(), Some(pod_name.as_str()));
    assert!(
        event
            .note
            .as_deref()
            .is_some_and(|n| n.contains(&format!("{victim}:8080"))),
        "{event:?}"
    );
    // It led: the chart's Lease, held by this replica.
    let lease = json(kubectl().args(["get", "lease", &full, "-n", &ns, "-o", "json"]));
    assert_eq!(lease["spec"]["holderIdentity"], pod_name.as_str());
    assert!(operator
        .metrics()
        .await
        .contains("nacos_reconciler_leader 1"));

    let text = std::fs::read_to_string(&log).expect("operator log");
    let denied: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("forbidden") || l.contains("unauthorized")
        })
        .collect();
    assert!(
        denied.is_empty(),
        "RBAC denials in the operator log:\n{}",
        denied.join("\n")
    );
    assert!(text.contains("became leader"), "{text}");
}
per_server!(
    the_operator_as_the_charts_service_account_takes_a_removed_pods_instance_offline:
    nacos_2_5_1, rnacos_auth
);

/// The chart's pods are admitted where the API server enforces the `restricted` Pod Security
/// Standard, and the Deployment in the cluster carries every hardening setting.
#[test]
fn chart_runs_under_the_restricted_pod_security_standard() {
    let ns = unique("helm-psa");
    let release = unique("nr");
    let _cleanup = Cleanup {
        release: Some((release.clone(), ns.clone())),
        namespaces: vec![ns.clone()],
    };
    create_namespace(&ns);
    ok(
        kubectl().args([
            "label",
            "namespace",
            &ns,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ]),
        None,
    );
    // Enforcement is on here: a pod without the settings is refused.
    let plain = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "plain", "namespace": "{ns}"}},
            "spec": {{"containers": [{{"name": "c", "image": "busybox"}}]}}}}"#
    );
    let refused = output(
        kubectl().args(["apply", "--dry-run=server", "-f", "-"]),
        Some(&plain),
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("violates PodSecurity \"restricted"),
        "the namespace does not enforce the restricted standard: {err}"
    );

    let out = ok(
        helm()
            .args(["install", &release])
            .arg(chart())
            .args(["--namespace", &ns])
            .args(["--wait", "--timeout", "120s"]),
        None,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    let full = format!("{release}-nacos-reconciler");
    let d = json(kubectl().args(["get", "deployment", &full, "-n", &ns, "-o", "json"]));
    assert_eq!(d["status"]["readyReplicas"], 2, "{}", d["status"]);
    let rs = json(kubectl().args([
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector",
        "reason=FailedCreate",
        "-o",
        "json",
    ]));
    assert_eq!(rs["items"].as_array().map(Vec::len), Some(0), "{rs}");

    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    for sc in [&pod["securityContext"], &c["securityContext"]] {
        assert_eq!(sc["runAsNonRoot"], true, "{sc}");
        assert!(sc["runAsUser"].as_u64().is_some_and(|u| u > 0), "{sc}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{sc}");
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(sc["capabilities"]["add"].is_null(), "{sc}");
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);
    assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null());
}

/// The image's final stage runs as a non-root user (static check of the Dockerfile).
#[test]
fn dockerfile_final_stage_runs_as_non_root() {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.to_uppercase().starts_with("FROM "))
        .expect("a FROM");
    let final_stage = &lines[last_from..];
    assert!(
        final_stage[0].contains("distroless") && final_stage[0].contains(":nonroot"),
        "final base image: {}",
        final_stage[0]
    );
    let user = final_stage
        .iter()
        .rev()
        .find(|l| l.to_uppercase().starts_with("USER "))
        .expect("the final stage sets USER");
    let who = user[5..].trim();
    let (uid, gid) = who.split_once(':').unwrap_or((who, ""));
    let uid: u32 = uid
        .parse()
        .expect("a numeric USER (Kubernetes checks runAsNonRoot by uid)");
    assert!(uid > 0, "USER {who}");
    assert!(
        gid.is_empty() || gid.parse::<u32>().is_ok_and(|g| g > 0),
        "USER {who}"
    );
    // Matches the chart's runAsUser.
    let values = std::fs::read_to_string(chart().join("templates/deployment.yaml")).unwrap();
    assert!(values.contains(&format!("runAsUser: {uid}")));
}
