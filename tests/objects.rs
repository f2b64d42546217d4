//! `Network` and `Volume` resources and several networks per container, end to end against
//! the real Docker daemon: create, no-op, recreate when unused (our containers moved over),
//! refusal when another owner's container uses the network, `reclaimPolicy`, prune; and a
//! container on three networks reached by its alias on each from another container.

mod common;

use std::path::Path;
use std::process::Output;

use common::{dockwright, ensure_test_image, unique, TestOwner, TEST_IMAGE};
use serde_json::Value;

fn docker_cli(args: &[&str]) -> Output {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap()
}

/// Force-removes a container the test created itself (not owned by dockwright) on drop.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = docker_cli(&["rm", "-f", &self.0]);
    }
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cmd(owner: &TestOwner, verb: &str, dir: &Path, extra: &[&str]) -> Output {
    dockwright()
        .args([verb, "-f", dir.to_str().unwrap()])
        .args(extra)
        .arg("--owner")
        .arg(owner.name())
        .output()
        .unwrap()
}

fn inspect(kind: &str, name: &str) -> Option<Value> {
    let out = docker_cli(&[kind, "inspect", name]);
    if !out.status.success() {
        return None;
    }
    let mut all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    Some(all.remove(0))
}

fn network_id(name: &str) -> Option<String> {
    inspect("network", name).map(|n| n["Id"].as_str().unwrap().to_string())
}

fn network(name: &str, spec: &str) -> String {
    format!("apiVersion: dockwright.dev/v1alpha1\nkind: Network\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

fn volume(name: &str, spec: &str) -> String {
    format!("apiVersion: dockwright.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

fn container(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n{spec}"
    )
}

#[tokio::test]
async fn networks_and_volumes_are_created_kept_recreated_refused_and_pruned() {
    ensure_test_image().await;
    let owner = TestOwner::new("objects");
    let dir = tempfile::tempdir().unwrap();
    let (net, data, keep, app) = (unique("net"), unique("data"), unique("keep"), unique("app"));
    write(
        dir.path(),
        "net.yaml",
        &network(&net, "  labels: {tier: back}\n"),
    );
    write(
        dir.path(),
        "data.yaml",
        &volume(&data, "  labels: {tier: back}\n  reclaimPolicy: Delete\n"),
    );
    write(dir.path(), "keep.yaml", &volume(&keep, "  driver: local\n"));
    let app_spec = format!(
        "  command: [sleep, \"3600\"]\n  networks: [{{name: {net}, aliases: [api]}}]\n  volumes:\n    - {{source: {data}, target: /data}}\n    - {{source: {keep}, target: /keep}}\n"
    );
    write(dir.path(), "app.yaml", &container(&app, &app_spec));

    // Create: the network and volumes carry our labels, the container is on the network.
    let out = cmd(&owner, "apply", dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let n = inspect("network", &net).expect("network created");
    let labels = &n["Labels"];
    assert_eq!(labels["dockwright.dev/owner"], owner.name());
    assert_eq!(
        labels["dockwright.dev/resource"],
        format!("Network/default/{net}")
    );
    assert_eq!(labels["tier"], "back");
    let v = inspect("volume", &data).expect("volume created");
    assert_eq!(v["Labels"]["dockwright.dev/reclaim-policy"], "Delete");
    assert_eq!(
        inspect("volume", &keep).unwrap()["Labels"]["dockwright.dev/reclaim-policy"],
        "Retain"
    );
    let c = inspect("container", &app).unwrap();
    let endpoint = &c["NetworkSettings"]["Networks"][&net];
    assert_eq!(endpoint["NetworkID"], n["Id"]);
    assert!(
        endpoint["Aliases"].to_string().contains("\"api\""),
        "{endpoint}"
    );

    // No-op.
    let out = cmd(&owner, "apply", dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no changes"), "{}", text(&out));
    let container_id = c["Id"].as_str().unwrap().to_string();

    // A changed network spec is recreated (only our container uses it), which keeps the
    // container and moves it over with its alias.
    write(
        dir.path(),
        "net.yaml",
        &network(&net, "  labels: {tier: front}\n"),
    );
    let out = cmd(&owner, "diff", dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("recreate {net}: spec changed"))
            && text(&out).contains("labels.tier"),
        "{}",
        text(&out)
    );
    let before = network_id(&net).unwrap();
    let out = cmd(&owner, "apply", dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let after = network_id(&net).unwrap();
    assert_ne!(before, after);
    let c = inspect("container", &app).unwrap();
    assert_eq!(c["Id"], container_id.as_str(), "the container is kept");
    let endpoint = &c["NetworkSettings"]["Networks"][&net];
    assert_eq!(endpoint["NetworkID"], after.as_str());
    assert!(
        endpoint["Aliases"].to_string().contains("\"api\""),
        "{endpoint}"
    );
    assert_eq!(c["State"]["Running"], true);

    // Another owner's container on the network: the recreate is refused, naming it.
    let foreign = unique("foreign");
    let _guard = RemoveOnDrop(foreign.clone());
    let out = docker_cli(&[
        "create",
        "--name",
        &foreign,
        "--network",
        &net,
        TEST_IMAGE,
        "sleep",
        "3600",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    write(
        dir.path(),
        "net.yaml",
        &network(&net, "  labels: {tier: other}\n"),
    );
    let out = cmd(&owner, "apply", dir.path(), &[]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("Network/default/{net}")) && text(&out).contains(&foreign),
        "{}",
        text(&out)
    );
    assert_eq!(network_id(&net).unwrap(), after, "left as it is");
    let _ = docker_cli(&["rm", "-f", &foreign]);

    // A Retain volume's spec change is refused: its data would go.
    write(
        dir.path(),
        "net.yaml",
        &network(&net, "  labels: {tier: front}\n"),
    );
    write(
        dir.path(),
        "keep.yaml",
        &volume(&keep, "  labels: {x: y}\n"),
    );
    let out = cmd(&owner, "apply", dir.path(), &[]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("reclaimPolicy is Retain"),
        "{}",
        text(&out)
    );
    // A Delete volume in use is refused as well, naming the user.
    write(dir.path(), "keep.yaml", &volume(&keep, "  driver: local\n"));
    write(
        dir.path(),
        "data.yaml",
        &volume(
            &data,
            "  labels: {tier: changed}\n  reclaimPolicy: Delete\n",
        ),
    );
    let out = cmd(&owner, "apply", dir.path(), &[]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("containers use it") && text(&out).contains(&app),
        "{}",
        text(&out)
    );
    write(
        dir.path(),
        "data.yaml",
        &volume(&data, "  labels: {tier: back}\n  reclaimPolicy: Delete\n"),
    );

    // Prune: the container, the network and the Delete volume go; diff says the data goes;
    // the Retain volume stays.
    for f in ["net.yaml", "data.yaml", "keep.yaml", "app.yaml"] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    write(
        dir.path(),
        "other.yaml",
        &container(&unique("other"), "  command: [sleep, \"3600\"]\n"),
    );
    let out = cmd(&owner, "diff", dir.path(), &["--prune"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("remove-volume {data} (its data is deleted)")),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains(&format!("remove-volume {keep}")),
        "{}",
        text(&out)
    );
    let out = cmd(&owner, "apply", dir.path(), &["--prune"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(inspect("container", &app).is_none());
    assert!(network_id(&net).is_none());
    assert!(inspect("volume", &data).is_none());
    assert!(inspect("volume", &keep).is_some(), "Retain keeps the data");
}

#[tokio::test]
async fn a_container_on_three_networks_is_reached_by_its_alias_on_each() {
    ensure_test_image().await;
    let owner = TestOwner::new("three-nets");
    let dir = tempfile::tempdir().unwrap();
    let nets = [unique("n1"), unique("n2"), unique("n3")];
    // A /24 in 10.213.0.0/16 picked from the name, for the fixed address.
    let third = u8::from_str_radix(&nets[2][nets[2].len() - 2..], 16).unwrap();
    let subnet = format!("10.213.{third}.0/24");
    let fixed = format!("10.213.{third}.77");
    write(
        dir.path(),
        "n1.yaml",
        &network(&nets[0], "  internal: true\n"),
    );
    write(
        dir.path(),
        "n2.yaml",
        &network(&nets[1], "  driver: bridge\n"),
    );
    write(
        dir.path(),
        "n3.yaml",
        &network(
            &nets[2],
            &format!("  ipam:\n    config: [{{subnet: {subnet}}}]\n"),
        ),
    );
    let (server, client) = (unique("server"), unique("client"));
    write(
        dir.path(),
        "server.yaml",
        &container(
            &server,
            &format!(
                "  command: [httpd, -f, -p, \"8080\", -h, /www]\n  files: [{{path: /www/index.html, content: hello}}]\n  networks:\n    - {{name: {}, aliases: [one]}}\n    - {{name: {}, aliases: [two]}}\n    - {{name: {}, aliases: [three], ipv4Address: {fixed}}}\n",
                nets[0], nets[1], nets[2]
            ),
        ),
    );
    write(
        dir.path(),
        "client.yaml",
        &container(
            &client,
            &format!(
                "  command: [sleep, \"3600\"]\n  networks: [{{name: {}}}, {{name: {}}}, {{name: {}}}]\n",
                nets[0], nets[1], nets[2]
            ),
        ),
    );
    let out = cmd(&owner, "apply", dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));

    let c = inspect("container", &server).unwrap();
    let networks = c["NetworkSettings"]["Networks"].as_object().unwrap();
    assert_eq!(networks.len(), 3, "{networks:?}");
    assert_eq!(networks[&nets[2]]["IPAddress"], fixed.as_str());
    // Aliases are scoped to their network: reaching each proves that network carries it.
    for (alias, net) in [("one", &nets[0]), ("two", &nets[1]), ("three", &nets[2])] {
        let mut body = String::new();
        for _ in 0..50 {
            // busybox's nc (its static wget cannot resolve names in this image).
            let request =
                format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {alias} 8080");
            let out = docker_cli(&["exec", &client, "sh", "-c", &request]);
            body = text(&out);
            if out.status.success() && body.ends_with("hello") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            body.starts_with("HTTP/1.") && body.ends_with("\r\n\r\nhello"),
            "alias {alias} on {net}: {body}"
        );
        assert!(networks[net.as_str()]["Aliases"]
            .to_string()
            .contains(alias));
    }

    // No-op; then a fourth network changes the spec hash and recreates the server.
    let out = cmd(&owner, "apply", dir.path(), &[]);
    assert!(text(&out).contains("no changes"), "{}", text(&out));
    let n4 = unique("n4");
    write(dir.path(), "n4.yaml", &network(&n4, "  attachable: true\n"));
    let server_yaml = std::fs::read_to_string(dir.path().join("server.yaml")).unwrap();
    write(
        dir.path(),
        "server.yaml",
        &format!("{server_yaml}    - {{name: {n4}, aliases: [four]}}\n"),
    );
    let out = cmd(&owner, "diff", dir.path(), &[]);
    assert!(text(&out).contains("extraNetworks[2]"), "{}", text(&out));
    let out = cmd(&owner, "apply", dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let recreated = inspect("container", &server).unwrap();
    assert_ne!(recreated["Id"], c["Id"]);
    assert_eq!(
        recreated["NetworkSettings"]["Networks"]
            .as_object()
            .unwrap()
            .len(),
        4
    );
}
