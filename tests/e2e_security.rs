//! Security, end to end, on Alibaba Nacos and rnacos: credentials never leak (logs at trace level,
//! Events, status, metrics), and TLS to Nacos with a custom CA, without one, and with
//! insecureSkipVerify — through a TLS-terminating proxy (this file, tokio-rustls) in front of the
//! server, with a CA and certificate minted by openssl.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

// ------------------------------------------------------------------------------------------------
// A proxy in front of a Nacos server: optionally terminating TLS, always recording what the server
// answered (to learn the access token the operator was given).

struct Proxy {
    /// host:port to put after http:// or https://
    addr: String,
    answers: Arc<Mutex<Vec<u8>>>,
    handshakes: Arc<Mutex<(u32, u32)>>, // (completed, failed)
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(upstream: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap().to_string();
        let answers = Arc::new(Mutex::new(Vec::new()));
        let handshakes = Arc::new(Mutex::new((0, 0)));
        let (a, h) = (answers.clone(), handshakes.clone());
        let task = tokio::spawn(async move {
            let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, acceptor, a, h) =
                    (upstream.clone(), acceptor.clone(), a.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    match acceptor {
                        None => relay(client, server, a).await,
                        Some(acc) => match acc.accept(client).await {
                            Ok(tls) => {
                                h.lock().unwrap().0 += 1;
                                relay(tls, server, a).await
                            }
                            Err(_) => h.lock().unwrap().1 += 1,
                        },
                    }
                });
            }
        });
        Self {
            addr,
            answers,
            handshakes,
            task,
        }
    }

    fn answers(&self) -> String {
        String::from_utf8_lossy(&self.answers.lock().unwrap()).into_owned()
    }
}

/// Copies both ways until either side closes; appends the server's bytes to `answers`.
async fn relay<C>(client: C, server: TcpStream, answers: Arc<Mutex<Vec<u8>>>)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answers.lock().unwrap().extend_from_slice(&buf[..n]);
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

// ------------------------------------------------------------------------------------------------
// A CA and a server certificate for 127.0.0.1, minted with the openssl CLI.

struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pem_blocks(pem: &str, label: &str) -> Vec<Vec<u8>> {
    let (begin, end) = (
        format!("-----BEGIN {label}-----"),
        format!("-----END {label}-----"),
    );
    let mut out = vec![];
    let mut rest = pem;
    while let Some(i) = rest.find(&begin) {
        let body = &rest[i + begin.len()..];
        let j = body.find(&end).expect("PEM end");
        let b64: String = body[..j].split_whitespace().collect();
        out.push(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("PEM base64"),
        );
        rest = &body[j..];
    }
    out
}

fn mint_pki() -> Pki {
    let dir: PathBuf = std::env::temp_dir().join(unique("tls-pki"));
    std::fs::create_dir_all(&dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    openssl(
        &dir,
        &[
            &["req", "-x509", "-nodes"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=nacos-reconciler test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    openssl(
        &dir,
        &[
            &["req", "-nodes"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let certs = pem_blocks(&read("server.crt"), "CERTIFICATE")
        .into_iter()
        .map(rustls::pki_types::CertificateDer::from)
        .collect();
    let key = pem_blocks(&read("server.key"), "PRIVATE KEY")
        .pop()
        .expect("a PKCS#8 server key");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.into());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server certificate");
    Pki {
        ca_pem: read("ca.crt"),
        server: Arc::new(server),
    }
}

// ------------------------------------------------------------------------------------------------

async fn create_secret(client: &kube::Client, ns: &str, name: &str, data: serde_json::Value) {
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&Default::default(), &s)
        .await
        .expect("create secret");
}

fn kubectl(args: &[&str]) -> String {
    let out = std::process::Command::new(testbed_env("KUBECTL"))
        .args(["--kubeconfig", &testbed_env("KUBECONFIG")])
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The testbed's own KWOK node the pods run on. Other tests create nodes of their own (OwnKwokNode)
/// and stop or delete them; a pod the scheduler put there would go Pending, be evicted and come back
/// elsewhere with another IP, which is not what these tests are about.
const SHARED_NODE: &str = "kwok-node-2";

/// A binding spec like the scene's, of `svc`, reaching Nacos at `addr` with Secret `secret`.
fn binding_at(scene: &Scene, svc: &str, addr: &str, secret: Option<&str>) -> serde_json::Value {
    let mut spec = scene.binding_spec(
        &[svc],
        json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}),
    );
    spec["nacos"] = json!({"serverAddr": [addr]});
    if let Some(secret) = secret {
        spec["nacos"]["credentialsSecretRef"] = json!({"name": secret});
    }
    spec["resyncSeconds"] = json!(5);
    spec
}

/// Three bindings in one namespace, one operator at trace level: the scene's binding reaches
/// `server` (auth on) with the right credentials through a proxy that records the login answer
/// (the token the server gave the operator); `wrong` reaches it with a wrong password; `ak` reaches
/// the open rnacos with an access key and secret key (signatures, which no server with auth on here
/// accepts). Nothing secret may appear in what the operator writes or says.
async fn credentials_and_tokens_never_appear_in_logs_events_status_or_metrics(server: Server) {
    let (user, password) = server.credentials().expect("a server with auth");
    let (access_key, secret_key) = ("AKID-secship-visible", "SK-secship-N3ver-Sh0w-7f3a");
    let wrong_password = "Wr0ng-secship-Passw0rd-91c2";
    // The operator reaches the server through a proxy that records the answers: the login
    // answer holds the access token the operator was given.
    let proxy = Proxy::start(&server.addr(), None).await;
    let via_proxy = format!("http://{}", proxy.addr);
    let scene = Scene::on(server, "sec")
        .pods(3)
        .on_node(SHARED_NODE)
        .registered(By::Persistent)
        .through(&via_proxy)
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
        .spec(json!({"resyncSeconds": 5}))
        .build()
        .await;
    // The test's own token (the scene registered with it): a token of the same user.
    let my_token = server.token().await.expect("a token");
    let (client, ns) = (&scene.client, scene.ns.as_str());
    let open = Server::Rnacos;
    let (svc_auth, svc_ak, svc_wrong) =
        (scene.svc.clone(), format!("{ns}-ak"), format!("{ns}-wrong"));
    for (_, ip) in &scene.pods {
        server
            .register_persistent(&Registration::new(&svc_wrong, ip, 8080))
            .await;
        open.register_persistent(&Registration::new(&svc_ak, ip, 8080))
            .await;
    }
    create_secret(
        client,
        ns,
        "nacos-ak",
        json!({"accessKey": access_key, "secretKey": secret_key}),
    )
    .await;
    create_secret(
        client,
        ns,
        "nacos-wrong",
        json!({"username": user, "password": wrong_password}),
    )
    .await;
    let user_binding = scene.app.as_str();
    create_binding(
        client,
        ns,
        "ak",
        binding_at(&scene, &svc_ak, &open.addr(), Some("nacos-ak")),
    )
    .await;
    create_binding(
        client,
        ns,
        "wrong",
        binding_at(&scene, &svc_wrong, &server.addr(), Some("nacos-wrong")),
    )
    .await;
    let (operator, log) = Operator::start_custom(
        &format!("operator-trace-{ns}"),
        &[
            "--kubeconfig",
            &testbed_env("KUBECONFIG"),
            "--namespaces",
            ns,
            "--log-level",
            "trace",
        ],
    );
    for name in [user_binding, "ak"] {
        wait_binding(client, ns, name, "Ready with 3 live", |s| {
            condition_is(s, "Ready", "True") && s.instances.live == 3
        })
        .await;
    }
    wait_binding(client, ns, "wrong", "AuthFailed", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "NacosReachable" && c.reason == "AuthFailed")
    })
    .await;

    // A deregistration on each of the two servers (persistent instances: a DELETE removes them).
    let (_, gone) = scene.scale_to(2).await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    let victim = gone[0].clone();
    wait_for(
        "the victim deregistered on both servers",
        Duration::from_secs(60),
        || async {
            let gone_auth = server.held(&svc_auth, &victim, 8080).await.is_none();
            let gone_open = open.held(&svc_ak, &victim, 8080).await.is_none();
            (gone_auth && gone_open).then_some(())
        },
    )
    .await;
    for name in [user_binding, "ak"] {
        wait_binding(client, ns, name, "removedTotal 1", |s| s.removed_total == 1).await;
        wait_for(
            &format!("a Deregistered Event for {name}"),
            Duration::from_secs(30),
            || async {
                binding_events(client, ns, name)
                    .await
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("Deregistered"))
                    .then_some(())
            },
        )
        .await;
    }
    // The wrong password removed nothing.
    let held = server
        .held(&svc_wrong, &victim, 8080)
        .await
        .expect("removed with a wrong password");
    assert!(held.enabled, "disabled with a wrong password: {held:?}");

    // The tokens the server gave the operator, from the login answers the proxy relayed.
    let answers = proxy.answers();
    let tokens: Vec<String> = answers
        .split("\"accessToken\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|t| t.len() >= 16)
        .map(str::to_string)
        .collect();
    assert!(
        !tokens.is_empty(),
        "no login answer went through the proxy:\n{answers}"
    );

    // Everything the operator wrote or said.
    let logs = std::fs::read_to_string(&log).expect("operator log");
    assert!(
        logs.contains("TRACE") && logs.contains("logged in to Nacos"),
        "the log is not at trace level, or no login happened"
    );
    let events = [
        kubectl(&["get", "events.events.k8s.io", "-n", ns, "-o", "yaml"]),
        kubectl(&["get", "events", "-n", ns, "-o", "yaml"]),
    ]
    .concat();
    assert!(events.contains("Deregistered") && events.contains("AuthFailed"));
    let status = kubectl(&["get", "nacosbindings", "-n", ns, "-o", "yaml"]);
    assert!(status.contains("removedTotal"));
    let metrics = operator.metrics().await;
    assert!(metrics.contains("nacos_reconciler_actions_total"));
    let secrets = [
        ("password", password.clone()),
        ("password (base64)", b64(&password)),
        ("wrong password", wrong_password.to_string()),
        ("wrong password (base64)", b64(wrong_password)),
        ("secret key", secret_key.to_string()),
        ("secret key (base64)", b64(secret_key)),
        ("an access token of the same user", my_token.clone()),
    ]
    .into_iter()
    .chain(
        tokens
            .iter()
            .map(|t| ("an access token the operator was given", t.clone())),
    )
    .collect::<Vec<_>>();
    let mut leaks = vec![];
    for (place, text) in [
        ("operator log", &logs),
        ("Events", &events),
        ("status", &status),
        ("metrics", &metrics),
    ] {
        for (what, value) in &secrets {
            if text.contains(value.as_str()) {
                let line = text
                    .lines()
                    .find(|l| l.contains(value.as_str()))
                    .unwrap_or("");
                leaks.push(format!("{what} in the {place}: {line}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{server}: secrets leaked:\n{}",
        leaks.join("\n")
    );
    eprintln!(
        "{server}: checked {} bytes of log, {} of Events, {} of status, {} of metrics for {} \
         secrets (of them tokens the operator was given: {})",
        logs.len(),
        events.len(),
        status.len(),
        metrics.len(),
        secrets.len(),
        tokens.len()
    );
}
per_server!(
    credentials_and_tokens_never_appear_in_logs_events_status_or_metrics:
    nacos_2_5_1, nacos_3_0_3, rnacos_auth
);

/// Three bindings to `server` through a TLS-terminating proxy: the scene's own trusts the proxy's
/// certificate through a custom CA, `noca` does not, `skip` skips verification.
async fn tls_to_nacos_with_a_custom_ca_without_it_and_with_insecure_skip_verify(server: Server) {
    let pki = mint_pki();
    let proxy = Proxy::start(&server.addr(), Some(pki.server.clone())).await;
    let https = format!("https://{}", proxy.addr);
    let scene = Scene::on(server, "tls")
        .pods(3)
        .on_node(SHARED_NODE)
        .registered(By::Persistent)
        .through(&https)
        .policy(json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}))
        .spec(json!({"nacos": {"tls": {"caSecretRef": {"name": "nacos-ca"}}}, "resyncSeconds": 5}))
        .build()
        .await;
    let (client, ns) = (&scene.client, scene.ns.as_str());
    let ca = scene.app.as_str();
    let svc = |b: &str| {
        if b == ca {
            scene.svc.clone()
        } else {
            format!("{ns}-{b}")
        }
    };
    for b in ["noca", "skip"] {
        for (_, ip) in &scene.pods {
            server
                .register_persistent(&Registration::new(&svc(b), ip, 8080))
                .await;
        }
    }
    create_secret(client, ns, "nacos-ca", json!({"ca.crt": pki.ca_pem})).await;
    for (b, tls) in [
        ("noca", serde_json::Value::Null),
        ("skip", json!({"insecureSkipVerify": true})),
    ] {
        let mut spec = scene.binding_spec(
            &[&svc(b)],
            json!({"gracePeriodSeconds": 0, "maxRemovals": "100%"}),
        );
        spec["nacos"]["serverAddr"] = json!([https]);
        if !tls.is_null() {
            spec["nacos"]["tls"] = tls;
        }
        spec["resyncSeconds"] = json!(5);
        create_binding(client, ns, b, spec).await;
    }
    let (_operator, log) = Operator::start_custom(
        &format!("operator-tls-{ns}"),
        &[
            "--kubeconfig",
            &testbed_env("KUBECONFIG"),
            "--namespaces",
            ns,
            "--log-level",
            "info,nacos_reconciler=debug",
        ],
    );
    for b in [ca, "skip"] {
        wait_binding(client, ns, b, "Ready with 3 live over https", |s| {
            condition_is(s, "Ready", "True") && s.instances.live == 3
        })
        .await;
    }
    // Without the CA: not reachable, and the condition and a Warning Event say why.
    let s = wait_binding(client, ns, "noca", "NacosReachable=False", |s| {
        condition_is(s, "NacosReachable", "False")
    })
    .await;
    let cond = s
        .conditions
        .iter()
        .find(|c| c.type_ == "NacosReachable")
        .unwrap();
    assert!(
        cond.message.contains("certificate is not trusted"),
        "{cond:?}"
    );
    assert!(!condition_is(&s, "Ready", "True"), "{s:#?}");
    let warning = wait_for(
        "a Warning Event saying the certificate is not trusted",
        Duration::from_secs(30),
        || async {
            binding_events(client, ns, "noca")
                .await
                .into_iter()
                .find(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.note
                            .as_deref()
                            .is_some_and(|n| n.contains("certificate is not trusted"))
                })
        },
    )
    .await;
    assert_eq!(warning.reason.as_deref(), Some("NacosUnavailable"));

    // A pod goes: its instance goes over https with the CA and with insecureSkipVerify; the
    // binding without the CA removes nothing. (Persistent instances: a DELETE removes them.)
    let (_, gone) = scene.scale_to(2).await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    let victim = gone[0].clone();
    for b in [ca, "skip"] {
        wait_for(
            &format!("{b}: the victim deregistered"),
            Duration::from_secs(40),
            || async {
                server
                    .held(&svc(b), &victim, 8080)
                    .await
                    .is_none()
                    .then_some(())
            },
        )
        .await;
        wait_binding(client, ns, b, "removedTotal 1", |s| s.removed_total == 1).await;
    }
    // Two more resyncs of the binding without the CA.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let held = server
        .held(&svc("noca"), &victim, 8080)
        .await
        .expect("the binding that does not trust the server removed an instance");
    assert!(
        held.enabled,
        "disabled by the binding that does not trust the server: {held:?}"
    );
    let s = wait_binding(client, ns, "noca", "still unreachable", |s| {
        condition_is(s, "NacosReachable", "False")
    })
    .await;
    assert_eq!(s.removed_total, 0);
    let (ok, failed) = *proxy.handshakes.lock().unwrap();
    assert!(
        ok > 0 && failed > 0,
        "handshakes: {ok} completed, {failed} failed"
    );

    // insecureSkipVerify is logged as a warning, naming the binding.
    let logs = std::fs::read_to_string(&log).expect("operator log");
    assert!(
        !logs.contains('\u{1b}'),
        "terminal escape codes in a text log written to a file"
    );
    let warned = logs.lines().find(|l| {
        l.contains("WARN") && l.contains("insecureSkipVerify") && l.contains(&format!("{ns}/skip"))
    });
    assert!(warned.is_some(), "no insecureSkipVerify warning in\n{logs}");
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("insecureSkipVerify") && l.contains(&format!("{ns}/{ca}"))),
        "warned for the binding with a CA"
    );
}
per_server!(tls_to_nacos_with_a_custom_ca_without_it_and_with_insecure_skip_verify: nacos_2_5_1, rnacos);
