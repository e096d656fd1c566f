//! Prints the ReplayRequest CustomResourceDefinition as YAML (the chart's
//! helm/orderflow/crds/replayrequest.yaml is this output: `make crds` writes it, `make test`
//! checks it is current).

fn main() -> anyhow::Result<()> {
    print!("{}", replay_controller::crd_yaml()?);
    Ok(())
}
