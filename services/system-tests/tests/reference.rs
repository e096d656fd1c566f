//! docs/reference/configuration.md is every service's `--help` (`make reference` rewrites
//! it), as the chart's CRD is `crdgen`'s output (replay-controller/tests/crd_file.rs).

use std::path::PathBuf;

use orderflow_runtime::config::{command, reference};

const FILE: &str = "docs/reference/configuration.md";

fn repo(path: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../..")
        .join(path)
}

fn generated() -> String {
    reference(
        vec![
            ("order-service", command::<order_service::config::Args>()),
            (
                "inventory-service",
                command::<inventory_service::config::Args>(),
            ),
            (
                "analytics-service",
                command::<analytics_service::config::Args>(),
            ),
            (
                "replay-controller",
                command::<replay_controller::config::Args>(),
            ),
        ],
        NOTES,
    )
}

const NOTES: &str = "## Elsewhere

- `orderflowctl` takes `--bootstrap` or `KAFKA_BOOTSTRAP`, and the `KAFKA_SECURITY_PROTOCOL`, \
`KAFKA_SASL_*` and `KAFKA_SSL_CA_LOCATION` variables as above: `orderflowctl --help`.
- The Helm chart sets these variables from its values: see [docs/kubernetes.md](../kubernetes.md).
";

#[test]
fn the_committed_configuration_reference_is_the_services_help() {
    let generated = generated();
    if std::env::var_os("ORDERFLOW_WRITE_REFERENCE").is_some() {
        std::fs::write(repo(FILE), &generated).expect(FILE);
        return;
    }
    let committed = std::fs::read_to_string(repo(FILE)).expect(FILE);
    assert!(
        committed == generated,
        "{FILE} differs from the services' --help: run `make reference` and commit it"
    );
}

/// The names of the environment variables a chart template sets: `- name: X` and
/// `(dict "name" "X" ...)`.
fn env_names(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    for marker in ["name: ", "\"name\" \""] {
        for (i, _) in template.match_indices(marker) {
            let name: String = template[i + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if name.len() > 1 {
                names.push(name);
            }
        }
    }
    names
}

#[test]
fn every_variable_the_chart_sets_is_in_the_reference() {
    let doc = generated();
    let mut names: Vec<String> = [
        "_helpers.tpl",
        "inventory.yaml",
        "analytics.yaml",
        "controller.yaml",
    ]
    .iter()
    .map(|f| repo("helm/orderflow/templates").join(f))
    .flat_map(|p| env_names(&std::fs::read_to_string(&p).expect("a chart template")))
    .collect();
    names.sort_unstable();
    names.dedup();
    for name in [
        "KAFKA_SASL_PASSWORD",
        "TRANSACTIONS",
        "POD_NAME",
        "RUST_LOG",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} not found in {names:?}"
        );
    }
    for name in names {
        assert!(
            doc.contains(&format!("[env: {name}]")),
            "{name} is set by the chart but not in {FILE}"
        );
    }
}
