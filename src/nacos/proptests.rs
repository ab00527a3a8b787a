//! Property tests for every parser of a Nacos server answer: arbitrary bytes and arbitrary JSON
//! never panic (each parser returns a value or an error), and well-formed answers generated here
//! parse back to exactly what was generated.
//!
//! The case count is fixed and explicit: [`CASES`] per property, or `PROPTEST_CASES` when set
//! (`tests/run.sh` runs the default).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::rnacos::missing as rnacos_missing;
use super::wire::*;
use super::{classify_error, namespace_listed, normalize_base_url};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 512;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig {
        cases,
        // Shrinking stays bounded too, so a failure reports quickly.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// Every parser of a server answer, fed the same body. None may panic.
fn feed_every_parser(body: &[u8]) {
    let _ = parse_wrapped(body);
    let _ = parse_error_code(body);
    let _ = parse_catalog_instances(body);
    let _ = parse_v3_instances(body);
    let _ = parse_rnacos_console_instances(body);
    let _ = parse_instance_detail(body);
    let _ = parse_v1_service_list(body);
    let _ = parse_v3_service_list(body);
    let _ = parse_service_clusters(body);
    let _ = parse_server_version(body);
    let _ = parse_login(body);
    let _ = parse_write_ack(body);
    let _ = parse_namespace_list(body);
    let text = String::from_utf8_lossy(body);
    let _ = truncate(&text, 7);
    let _ = truncate(&text, 200);
    for status in [200, 400, 401, 403, 404, 410, 500, 503] {
        let e = classify_error("http://n:8848", "/nacos/v1/ns/instance", status, body);
        let _ = e.to_string();
        let _ = rnacos_missing(status, body);
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let _ = unwrap_result(v.clone());
        let _ = instance_from_value(&v);
    }
}

/// Any JSON value, nested a few levels, with the keys the parsers look for showing up often.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => prop::sample::select(vec![
            "code", "message", "msg", "data", "list", "count", "doms", "pageItems", "totalCount",
            "serviceList", "hosts", "ip", "port", "clusterName", "weight", "healthy", "enabled",
            "ephemeral", "metadata", "name", "groupName", "serviceName", "clusters", "clusterMap",
            "service", "version", "accessToken", "tokenTtl", "success", "namespace", "namespaceId",
        ])
        .prop_map(str::to_string),
        1 => ".{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            ".{0,12}",
            Just("10.0.0.1".to_string()),
            Just("[fd00::1]".to_string()),
            Just("8080".to_string()),
            Just("true".to_string()),
            Just("0".to_string()),
            Just(r#"{"a":"b"}"#.to_string()),
            Just("G@@s".to_string()),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
    ]
}

fn wire_instance() -> impl Strategy<Value = WireInstance> {
    (
        ip(),
        1u16..=65535,
        "[A-Za-z0-9_-]{1,12}",
        (0u32..100_000).prop_map(|w| f64::from(w) / 100.0),
        any::<(bool, bool, bool)>(),
        prop::collection::btree_map(".{0,10}", ".{0,10}", 0..4),
    )
        .prop_map(
            |(ip, port, cluster, weight, (healthy, enabled, ephemeral), metadata)| WireInstance {
                ip,
                ip_text: ip.to_string(),
                port,
                cluster,
                weight,
                healthy,
                enabled,
                ephemeral,
                metadata,
            },
        )
}

fn instance_json(i: &WireInstance) -> Value {
    json!({
        "ip": i.ip.to_string(), "port": i.port, "clusterName": i.cluster, "weight": i.weight,
        "healthy": i.healthy, "enabled": i.enabled, "ephemeral": i.ephemeral,
        "metadata": i.metadata, "serviceName": "DEFAULT_GROUP@@s",
    })
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value serialises")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        feed_every_parser(&body);
    }

    #[test]
    fn arbitrary_text_never_panics(body in ".{0,256}") {
        feed_every_parser(body.as_bytes());
        let _ = normalize_base_url(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        feed_every_parser(&bytes(&v));
        // The same value as the data of a wrapped answer, and as an instance list.
        feed_every_parser(&bytes(&json!({"code": 0, "message": "success", "data": v})));
        feed_every_parser(&bytes(&json!({"code": 200, "data": [v]})));
        feed_every_parser(&bytes(&json!({"list": [v], "count": 1})));
        feed_every_parser(&bytes(&json!({"success": true, "data": {"list": [v]}})));
    }

    #[test]
    fn an_instance_with_arbitrary_fields_parses_or_fails_whole(
        fields in prop::collection::btree_map(
            prop::sample::select(vec![
                "ip", "port", "clusterName", "weight", "healthy", "enabled", "ephemeral", "metadata",
            ]).prop_map(str::to_string),
            json_value(),
            0..8,
        )
    ) {
        let obj = Value::Object(fields.into_iter().collect());
        let page = parse_catalog_instances(&bytes(&json!({"list": [obj.clone()], "count": 1})));
        match page {
            // Never an instance dropped from the page: a parsed page has it, addressable (with a
            // usable port) or listed as unaddressable.
            Ok(p) => {
                prop_assert_eq!(p.items.len(), 1);
                match &p.items[0] {
                    Ok(i) => prop_assert!(i.port != 0),
                    Err(_) => prop_assert!(instance_from_value(&obj).is_err()),
                }
            }
            Err(e) => prop_assert!(instance_from_value(&obj).is_err(), "page failed: {e}"),
        }
    }

    #[test]
    fn catalog_instances_round_trip(items in prop::collection::vec(wire_instance(), 0..8), extra in 0u64..3) {
        let total = items.len() as u64 + extra;
        let list: Vec<Value> = items.iter().map(instance_json).collect();
        let page = parse_catalog_instances(&bytes(&json!({"list": list, "count": total}))).unwrap();
        prop_assert_eq!(page.total, total);
        let ok = |l: Vec<Listed>| l.into_iter().map(|i| i.expect("addressable")).collect::<Vec<_>>();
        prop_assert_eq!(&ok(page.items), &items);
        // Wrapped by a compatibility layer, and numbers sent as strings: the same.
        let stringly: Vec<Value> = items
            .iter()
            .map(|i| {
                let mut v = instance_json(i);
                v["port"] = json!(i.port.to_string());
                v["enabled"] = json!(i.enabled.to_string());
                v
            })
            .collect();
        let wrapped = json!({"code": 0, "data": {"list": stringly, "count": total.to_string()}});
        prop_assert_eq!(ok(parse_catalog_instances(&bytes(&wrapped)).unwrap().items), items);
    }

    #[test]
    fn v3_console_and_detail_instances_round_trip(items in prop::collection::vec(wire_instance(), 1..6)) {
        let list: Vec<Value> = items.iter().map(instance_json).collect();
        let v3 = parse_v3_instances(&bytes(&json!({"code": 0, "message": "success", "data": list}))).unwrap();
        let ok = |l: Vec<Listed>| l.into_iter().map(|i| i.expect("addressable")).collect::<Vec<_>>();
        prop_assert_eq!(v3.total, items.len() as u64);
        prop_assert_eq!(&ok(v3.items), &items);
        let paged = json!({"code": 0, "data": {"totalCount": 99, "pageItems": list}});
        prop_assert_eq!(parse_v3_instances(&bytes(&paged)).unwrap().total, 99);
        let console = json!({"success": true, "data": {"totalCount": items.len(), "list": list}});
        prop_assert_eq!(&ok(parse_rnacos_console_instances(&bytes(&console)).unwrap().items), &items);
        prop_assert_eq!(&parse_instance_detail(&bytes(&list[0])).unwrap(), &items[0]);
    }

    #[test]
    fn service_lists_round_trip(
        names in prop::collection::vec("[A-Za-z0-9_.:-]{1,16}", 0..10),
        group in "[A-Z_]{1,10}",
        extra in 0u64..5,
    ) {
        let total = names.len() as u64 + extra;
        let v1 = parse_v1_service_list(&bytes(&json!({"count": total, "doms": names}))).unwrap();
        prop_assert_eq!(v1.total, total);
        prop_assert_eq!(&v1.items, &names);

        let objects: Vec<Value> = names.iter().map(|n| json!({"name": n, "groupName": group})).collect();
        let v3 = parse_v3_service_list(&bytes(&json!({"code": 0, "data": {"totalCount": total, "pageItems": objects}}))).unwrap();
        prop_assert_eq!(v3.total, total);
        let expected: Vec<WireService> = names
            .iter()
            .map(|n| WireService { group: Some(group.clone()), name: n.clone() })
            .collect();
        prop_assert_eq!(&v3.items, &expected);
        let grouped: Vec<String> = names.iter().map(|n| format!("{group}@@{n}")).collect();
        let v3s = parse_v3_service_list(&bytes(&json!({"code": 0, "data": {"pageItems": grouped}}))).unwrap();
        prop_assert_eq!(v3s.items, expected);
    }

    #[test]
    fn clusters_round_trip(names in prop::collection::btree_set("[A-Za-z0-9_-]{1,10}", 0..6)) {
        let names: Vec<String> = names.into_iter().collect();
        let list: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
        let v1 = json!({"service": {"name": "s"}, "clusters": list});
        prop_assert_eq!(&parse_service_clusters(&bytes(&v1)).unwrap(), &names);
        let map: serde_json::Map<String, Value> = names.iter().map(|n| (n.clone(), json!({}))).collect();
        let v3 = json!({"code": 0, "data": {"clusterMap": map}});
        prop_assert_eq!(&parse_service_clusters(&bytes(&v3)).unwrap(), &names);
    }

    #[test]
    fn namespace_lists_round_trip(
        ids in prop::collection::vec("[A-Za-z0-9_.-]{0,12}", 0..8),
        probe in "[A-Za-z0-9_.-]{1,12}",
        v3 in any::<bool>(),
    ) {
        let data: Vec<Value> = ids.iter().map(|i| json!({"namespace": i, "namespaceShowName": i, "quota": 200})).collect();
        let body = json!({"code": if v3 { 0 } else { 200 }, "message": null, "data": data});
        let parsed = parse_namespace_list(&bytes(&body)).unwrap();
        prop_assert_eq!(&parsed, &ids);
        let public = probe == "public";
        prop_assert_eq!(namespace_listed(&probe, &parsed), public || ids.contains(&probe));
    }

    #[test]
    fn version_login_and_error_codes_round_trip(
        version in "[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}",
        token in "[A-Za-z0-9._-]{1,64}",
        ttl in any::<u32>(),
        code in (1i64..100_000).prop_filter("200 means success", |c| *c != 200),
        message in ".{0,300}",
    ) {
        prop_assert_eq!(parse_server_version(format!(r#"{{"version":"{version}"}}"#).as_bytes()).unwrap(), version.clone());
        let wrapped = json!({"code": 0, "data": {"version": version}});
        prop_assert_eq!(parse_server_version(&bytes(&wrapped)).unwrap(), version);

        let login = parse_login(&bytes(&json!({"accessToken": token, "tokenTtl": ttl}))).unwrap();
        prop_assert_eq!(login.access_token, token);
        prop_assert_eq!(login.ttl_seconds, u64::from(ttl));

        let err = bytes(&json!({"code": code, "message": message, "data": null}));
        let (c, m) = parse_error_code(&err).unwrap();
        prop_assert_eq!(c, code);
        prop_assert_eq!(m, truncate(&message, 200));
        prop_assert!(parse_write_ack(&err).is_err());
        prop_assert!(parse_namespace_list(&err).is_err());
    }

    #[test]
    fn truncate_keeps_a_prefix_on_a_char_boundary(s in ".{0,64}", max in 0usize..80) {
        let t = truncate(&s, max);
        if s.len() <= max {
            prop_assert_eq!(t, s);
        } else {
            let kept = t.strip_suffix('…').unwrap();
            prop_assert!(kept.len() <= max);
            prop_assert!(s.starts_with(kept));
        }
    }
}

#[test]
fn the_case_count_is_explicit() {
    // Guards against an accidental unbounded run: the default is CASES unless overridden.
    if std::env::var_os("PROPTEST_CASES").is_none() {
        assert_eq!(config().cases, CASES);
    }
}
