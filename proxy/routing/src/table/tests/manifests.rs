//! Which documents of a manifest are read, and which fields are ignored.

use super::{TWO_SIDES, build, manifest};
use crate::VirtualService;

#[test]
fn reads_only_virtual_services_of_a_stream() {
    let stream = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: legacy}}\nspec: {{host: legacy-api}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: member-api}}\nspec: {{ports: [{{port: 80}}]}}\n---\n{}\n---\n",
        manifest(&format!("- {TWO_SIDES}"))
            .replace("networking.istio.io/v1\n", "networking.istio.io/v1beta1\n")
    );
    let vs = VirtualService::parse(&stream, None).unwrap();
    assert_eq!(vs.metadata.name, "member-api");
    assert_eq!(vs.api_version, "networking.istio.io/v1beta1");
    let two = format!(
        "{stream}{}",
        manifest(&format!("- {TWO_SIDES}")).replace("name: member-api", "name: other")
    );
    assert_eq!(VirtualService::parse_all(&two).unwrap().len(), 2);
    assert_eq!(
        VirtualService::parse(&two, Some("other"))
            .unwrap()
            .metadata
            .name,
        "other"
    );
    assert_eq!(
        VirtualService::parse(&two, None).unwrap_err().to_string(),
        "the manifest holds several VirtualServices (member-api, other); \
         set `virtual_service` in the proxy config to choose one"
    );
    assert_eq!(
        VirtualService::parse(&two, Some("third"))
            .unwrap_err()
            .to_string(),
        r#"the manifest holds no VirtualService named "third" (found: member-api, other)"#
    );
}

#[test]
fn harmless_fields_are_ignored() {
    let table = build(&format!(
        "- name: users\n  match:\n  - name: m\n    statPrefix: users\n    uri: {{prefix: /}}\n  \
         {TWO_SIDES}\n  retries: {{attempts: 1, retryRemoteLocalities: true}}\n  rewrite: {{}}\n  corsPolicy: null"
    ));
    assert!(table.is_ok(), "{table:?}");
}
