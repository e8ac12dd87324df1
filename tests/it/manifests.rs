//! The in-cluster manifest (`packaging/kubernetes/rollbackd.yaml`) is kept
//! honest: its configuration passes `rollbackd check` laid out as the
//! kubelet mounts it, the Deployment points at what the configuration says,
//! and its RBAC rules grant exactly the requests the real daemon makes while
//! it leads, rolls back a Deployment, a StatefulSet and a DaemonSet, and
//! releases its Lease (the simulator records each request as an API
//! server's authorizer sees it).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use kubesim::cluster::Access;
use serde_json::Value;

use crate::support::{self, Daemon, command, journal, wait_until};

const MANIFEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/kubernetes/rollbackd.yaml"
);

fn documents() -> Vec<Value> {
    let text = std::fs::read_to_string(MANIFEST).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the manifest has no {kind} {name}"))
}

/// Writes a ConfigMap's keys into `dir`, as its volume would show them.
fn mount(config_map: &Value, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (key, text) in config_map["data"].as_object().unwrap() {
        std::fs::write(dir.join(key), text.as_str().unwrap()).unwrap();
    }
}

fn container(docs: &[Value]) -> &Value {
    &object(docs, "Deployment", "rollbackd")["spec"]["template"]["spec"]["containers"][0]
}

fn mount_path<'a>(docs: &'a [Value], volume_of: &str) -> &'a str {
    let pod = &object(docs, "Deployment", "rollbackd")["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == volume_of)
        .unwrap_or_else(|| panic!("no volume of ConfigMap {volume_of}"));
    container(docs)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .unwrap()["mountPath"]
        .as_str()
        .unwrap()
}

#[test]
fn the_manifests_configuration_passes_check_where_the_deployment_mounts_it() {
    let docs = documents();
    let root = tempfile::tempdir().unwrap();
    // The two ConfigMaps go where the Deployment mounts them, under a
    // scratch root instead of `/`.
    let at = |p: &str| root.path().join(p.trim_start_matches('/'));
    let config_dir = mount_path(&docs, "rollbackd");
    let watches_dir = mount_path(&docs, "rollbackd-watches");
    mount(object(&docs, "ConfigMap", "rollbackd"), &at(config_dir));
    mount(
        object(&docs, "ConfigMap", "rollbackd-watches"),
        &at(watches_dir),
    );

    let c = container(&docs);
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[..2], ["run", "-c"]);
    let main = args[2];
    assert_eq!(
        Path::new(main).parent().unwrap(),
        Path::new(config_dir),
        "-c names the mounted file"
    );
    let out = command(&["check", "-c", at(main).to_str().unwrap()])
        .env(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/x",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("shop-web"),
        "the watch file was read: {stdout}"
    );

    // The secret the configuration names comes from the environment, and
    // the leader-election identity is the pod's name.
    let env: BTreeSet<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains("SLACK_WEBHOOK_URL") && env.contains("POD_NAME"));

    // The probes reach the port the configuration listens on.
    let config: toml::Table = std::fs::read_to_string(at(main)).unwrap().parse().unwrap();
    let listen = config["daemon"]["listen"].as_str().unwrap();
    assert!(listen.starts_with("0.0.0.0:"), "reachable by the kubelet");
    let port = c["ports"][0]["containerPort"].as_i64().unwrap();
    assert_eq!(listen.rsplit(':').next().unwrap(), port.to_string());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let lease_ns = config["kubernetes"]["leader_election"]["namespace"]
        .as_str()
        .unwrap();
    assert_eq!(
        object(&docs, "Role", "rollbackd-leader-election")["metadata"]["namespace"],
        lease_ns,
        "the Lease is where the Role grants it"
    );
}

/// A rule's grants as (group, resource, verb).
fn grants(rules: &Value) -> BTreeSet<(String, String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut out = BTreeSet::new();
    for rule in rules.as_array().unwrap() {
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    assert!(g != "*" && r != "*" && v != "*", "no wildcards: {rule}");
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

#[test]
fn the_rbac_rules_grant_every_request_the_daemon_makes_and_nothing_more() {
    let docs = documents();
    let cluster_wide = grants(&object(&docs, "ClusterRole", "rollbackd")["rules"]);
    let role = object(&docs, "Role", "rollbackd-leader-election");
    let own_ns = role["metadata"]["namespace"].as_str().unwrap().to_owned();
    let in_own_ns = grants(&role["rules"]);
    for (kind, name) in [
        ("ClusterRoleBinding", "rollbackd"),
        ("RoleBinding", "rollbackd-leader-election"),
    ] {
        let b = object(&docs, kind, name);
        assert_eq!(b["subjects"][0]["name"], "rollbackd");
        assert_eq!(b["subjects"][0]["namespace"], own_ns.as_str());
    }

    let (sim, _rt) = support::simulator();
    let c = &sim.cluster;
    c.create_deployment("shop", "web", "web:v1", 2, 2);
    c.create_statefulset("shop", "db", "db:v1", 2).unwrap();
    c.create_daemonset("shop", "agent", "agent:v1").unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig()).unwrap();
    std::fs::create_dir(dir.path().join("watches.d")).unwrap();
    std::fs::write(
        dir.path().join("rollbackd.toml"),
        format!(
            "[daemon]\nwatches = [\"watches.d\"]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:0\"\n\
             [kubernetes]\nkubeconfig = \"kubeconfig\"\nrequest_timeout = \"2s\"\n\
             leader_election = {{ lease = \"rollbackd\", namespace = \"{own_ns}\", lease_duration = \"2s\" }}\n\
             [defaults]\ninterval = \"200ms\"\nfailure_threshold = 3\nverify_for = \"1s\"\nrollout_timeout = \"3s\"\n"
        ),
    )
    .unwrap();
    let mut watches = String::new();
    for (kind, name) in [
        ("deployment", "web"),
        ("statefulset", "db"),
        ("daemonset", "agent"),
    ] {
        watches.push_str(&format!(
            "[[watch]]\nname = \"{name}\"\ntarget = {{ kind = \"{kind}\", namespace = \"shop\", name = \"{name}\" }}\n\
             [[watch.health]]\nurl = \"http://{}/app/shop/{name}/health\"\ntimeout = \"150ms\"\n\n",
            sim.addr
        ));
    }
    std::fs::write(dir.path().join("watches.d/shop.toml"), watches).unwrap();

    let mut d = Daemon::start(&dir.path().join("rollbackd.toml"), &[]);
    assert!(
        wait_until(Duration::from_secs(15), || d.status()["leader"] == true),
        "{}",
        d.logs().join("\n")
    );
    for (kind, name) in [
        ("deployment", "web"),
        ("statefulset", "db"),
        ("daemonset", "agent"),
    ] {
        c.set_image(kind, "shop", name, &format!("{name}:v2-bad"))
            .unwrap();
    }
    let state = dir.path().join("state");
    let finished = || {
        journal(&state)
            .into_iter()
            .filter(|e| e["event"] == "rollback_finished")
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(45), || finished().len() == 3),
        "{:#?}\n{}",
        journal(&state),
        d.logs().join("\n")
    );
    // Each undo was sent (a StatefulSet's OrderedReady rollout may then
    // wait for its broken pod, as on a cluster: the outcome is not the
    // point here).
    let applied = journal(&state)
        .into_iter()
        .filter(|e| e["event"] == "rollback_applied")
        .count();
    assert_eq!(applied, 3, "{:#?}", journal(&state));
    // A clean stop releases the Lease.
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10));

    let audit = c.audit.lock().unwrap().clone();
    let mut used = BTreeSet::new();
    for a in &audit {
        let Access {
            verb,
            group,
            resource,
            namespace,
        } = a;
        let key = (group.clone(), resource.clone(), verb.clone());
        let allowed = cluster_wide.contains(&key)
            || (namespace.as_deref() == Some(own_ns.as_str()) && in_own_ns.contains(&key));
        assert!(
            allowed,
            "the manifest's RBAC does not allow {a:?}; every request: {audit:#?}"
        );
        used.insert(key);
    }
    let unused: Vec<_> = cluster_wide
        .union(&in_own_ns)
        .filter(|g| !used.contains(*g))
        .collect();
    assert!(
        unused.is_empty(),
        "granted but never used: {unused:?}; every request: {audit:#?}"
    );
}
