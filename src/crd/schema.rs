//! The `schema_with` functions of spec fields whose schema the field attributes cannot express:
//! bounded string lists whose items carry a CEL rule, and a bounded, checked LabelSelector.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;

/// A list of strings whose items carry a CEL rule, so a rejection names the offending entry
/// (`spec.scope.cidrs[1]: Invalid value: "10.1.2.3": ...`). Bounds keep the rule cost within budget.
fn string_list_schema(
    min_items: u32,
    max_items: u32,
    max_length: u32,
    item_rule: &str,
    item_message: &str,
) -> schemars::Schema {
    let mut schema = schemars::json_schema!({
        "type": "array",
        "maxItems": max_items,
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": max_length,
            "x-kubernetes-validations": [{"rule": item_rule, "message": item_message}],
        },
    });
    if min_items > 0 {
        schema.insert("minItems".into(), min_items.into());
    }
    schema
}

pub(super) fn server_addr_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = string_list_schema(
        1,
        16,
        512,
        "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",
        "must be an http:// or https:// URL with a host, e.g. http://nacos-0.nacos:8848",
    );
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{
            "rule": "size(self) >= 1",
            "message": "serverAddr must list at least one Nacos server URL, e.g. [\"http://nacos.nacos:8848\"]"
        }]),
    );
    // Two more rules per address: the operator cannot use either, and says so only at run time.
    if let Some(rules) = schema
        .get_mut("items")
        .and_then(|items| items.get_mut("x-kubernetes-validations"))
        .and_then(serde_json::Value::as_array_mut)
    {
        rules.push(serde_json::json!({
            "rule": "!self.matches('^[A-Za-z][-A-Za-z0-9+.]*://[^/?#]*@')",
            "message": "must not carry credentials (user:password@); name a Secret in credentialsSecretRef instead"
        }));
        rules.push(serde_json::json!({
            // A regular expression, not url(): parsing the URL again for its port costs more
            // than the API server's CEL budget allows.
            "rule": "!self.matches('^[A-Za-z][-A-Za-z0-9+.]*://[^/?#]*:([0-9]{6,}|6553[6-9]|655[4-9][0-9]|65[6-9][0-9]{2}|6[6-9][0-9]{3}|[7-9][0-9]{4}|0+)([/?#]|$)')",
            "message": "the port of a server address must be from 1 to 65535, e.g. http://nacos-0.nacos:8848"
        }));
    }
    schema
}

/// The LabelSelector schema, bounded (so CEL rules stay within the cost budget) and checked the
/// way the API server checks a Deployment's selector: a known operator, and values exactly when
/// the operator needs them. The operator could not use any other selector.
pub(super) fn selector_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let schema = <LabelSelector as JsonSchema>::json_schema(generator);
    let mut value = schema.clone().to_value();
    if let Some(exprs) = value.pointer_mut("/properties/matchExpressions") {
        exprs["maxItems"] = 32.into();
        let item = &mut exprs["items"];
        item["properties"]["key"]["maxLength"] = 317.into();
        item["properties"]["key"]["minLength"] = 1.into();
        item["properties"]["operator"]["enum"] =
            serde_json::json!(["In", "NotIn", "Exists", "DoesNotExist"]);
        item["properties"]["values"]["maxItems"] = 64.into();
        item["properties"]["values"]["items"]["maxLength"] = 63.into();
        item["x-kubernetes-validations"] = serde_json::json!([{
            "rule": "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
            "message": "matchExpressions with In or NotIn need at least one value; Exists and DoesNotExist take none"
        }]);
    }
    if let Some(labels) = value.pointer_mut("/properties/matchLabels") {
        labels["maxProperties"] = 64.into();
        labels["additionalProperties"]["maxLength"] = 63.into();
    }
    schemars::Schema::try_from(value).unwrap_or(schema)
}

/// A selector over instance metadata: the LabelSelector schema, with at least one requirement (an
/// empty selector would claim every instance, which is what leaving it unset already means, minus
/// the guard against another cluster's instances).
pub(super) fn instance_metadata_schema(
    generator: &mut schemars::SchemaGenerator,
) -> schemars::Schema {
    let schema = selector_schema(generator);
    let mut value = schema.clone().to_value();
    value["x-kubernetes-validations"] = serde_json::json!([{
        "rule": "(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
        "message": "instanceMetadata needs at least one matchLabels entry or matchExpressions requirement, e.g. {matchLabels: {k8s-cluster: prod-a}}"
    }]);
    schemars::Schema::try_from(value).unwrap_or(schema)
}

pub(super) fn namespaces_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    string_list_schema(
        0,
        64,
        63,
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
        "must be a Kubernetes namespace name (lowercase letters, digits and '-'), e.g. shop",
    )
}

pub(super) fn cidrs_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    string_list_schema(
        0,
        64,
        64,
        "isCIDR(self)",
        "must be a CIDR such as 10.244.0.0/16 or fd00:10:244::/56 (a single address is written 10.1.2.3/32)",
    )
}
