//! The Kubernetes manifests (`deploy/kubernetes`): every overlay renders
//! with `kubectl kustomize`, every object it renders validates against the
//! Kubernetes schemas of a stated version (`kubernetes-validate --strict`,
//! from PyPI), and every `VAJRA_*` variable the manifests set is one the
//! binary reads.

mod common;

use std::path::Path;
use std::process::Command;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.30.0";

/// What `kubectl kustomize` renders, and what `kubernetes-validate` says
/// of it.
const RENDERED: [&str; 3] = ["overlays/small", "overlays/autoscaling", "test-job"];

fn kustomize(dir: &str) -> String {
    let path = Path::new("deploy/kubernetes").join(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&path)
        .output()
        .expect("kubectl (Debian's kubernetes-client)");
    assert!(
        out.status.success(),
        "{dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `kubernetes-validate --strict` on `yaml`: its exit status and
/// output.
fn validate(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .arg(&file)
        .output()
        .expect("kubernetes-validate (pip install kubernetes-validate)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The kinds of the objects in a rendered stream, in order.
fn kinds(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs kubectl and kubernetes-validate (installed by .ci/run)"]
fn every_overlay_renders_and_validates_against_the_kubernetes_schemas() {
    for dir in RENDERED {
        let yaml = kustomize(dir);
        let (valid, said) = validate(&yaml);
        assert!(valid, "{dir}:\n{said}");
        let passed = said.matches("passed for resource").count();
        assert_eq!(passed, kinds(&yaml).len(), "{dir}: every object\n{said}");
        println!("{dir}:\n{said}");
    }
    let small = kinds(&kustomize("overlays/small"));
    let scaling = kinds(&kustomize("overlays/autoscaling"));
    for kind in ["Secret", "Service", "Deployment", "PodDisruptionBudget"] {
        assert!(small.iter().any(|k| k == kind), "small lacks {kind}");
    }
    for kind in ["HorizontalPodAutoscaler", "PersistentVolumeClaim"] {
        assert!(
            scaling.iter().any(|k| k == kind),
            "autoscaling lacks {kind}"
        );
        assert!(!small.iter().any(|k| k == kind), "small has {kind}");
    }

    // The validator is strict: a misspelt field fails.
    let misspelt = kustomize("overlays/small").replace(
        "publishNotReadyAddresses: true",
        "publishNotReadyAdresses: true",
    );
    let (valid, said) = validate(&misspelt);
    assert!(!valid, "{said}");
    assert!(said.contains("publishNotReadyAdresses"), "{said}");
}

/// The `VAJRA_*` names set in `yaml`'s `env` lists.
fn env_names(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| {
            let l = l.trim();
            // A manifest's `- name: VAJRA_X`, or a compose file's `VAJRA_X: value`.
            l.strip_prefix("- name: VAJRA_")
                .or_else(|| l.strip_prefix("VAJRA_")?.split_once(':').map(|(k, _)| k))
        })
        .map(|rest| format!("VAJRA_{rest}"))
        .collect()
}

#[test]
fn every_variable_the_manifests_set_is_one_the_binary_reads() {
    for (file, commands) in [
        ("kubernetes/base/peers.yaml", &["join"][..]),
        (
            "kubernetes/orchestrator/orchestrator.yaml",
            &["orchestrator"],
        ),
        ("kubernetes/test-job/job.yaml", &["start"]),
        ("docker/docker-compose.yml", &["join"]),
        ("docker/docker-compose.scale.yml", &["join", "orchestrator"]),
    ] {
        let yaml = std::fs::read_to_string(Path::new("deploy").join(file)).unwrap();
        let names = env_names(&yaml);
        assert!(!names.is_empty(), "{file}");
        let command = commands.join(" and ");
        let help: String = commands
            .iter()
            .map(|c| {
                let out = common::binary().args([c, "--help"]).output().unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .collect();
        // Help text wraps: compare with its whitespace collapsed.
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for name in names {
            // The secret is read from the environment by name, not a flag.
            if name == "VAJRA_CLUSTER_SECRET" {
                assert!(help.contains(&name), "{command} --help names {name}");
                continue;
            }
            assert!(
                help.contains(&format!("env: {name}=")),
                "{file}: `vajra-peer {command}` reads no {name}"
            );
        }
    }
}

#[test]
fn a_peer_refuses_the_manifests_placeholder_secret() {
    let yaml = std::fs::read_to_string("deploy/kubernetes/base/secret.yaml").unwrap();
    let placeholder = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret: "))
        .expect("the Secret's value");
    let out = common::binary()
        .args(["join", "--listen", "127.0.0.1:0"])
        .env("VAJRA_CLUSTER_SECRET", placeholder)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("placeholder"), "{stderr}");
}

#[test]
fn both_images_have_the_same_entrypoint() {
    let entrypoint = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("ENTRYPOINT") || l.starts_with("CMD"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let scratch = entrypoint("deploy/docker/Dockerfile");
    assert_eq!(scratch.len(), 2, "{scratch:?}");
    assert_eq!(scratch, entrypoint("deploy/docker/Dockerfile.build"));
}

/// `verdict.sh` against a stand-in `kubectl` that reports the Job as
/// `status` says (`succeeded` or `failed`, after one poll while active).
fn verdict(status: &str) -> Option<i32> {
    let dir = tempfile::tempdir().unwrap();
    let polls = dir.path().join("polls");
    let fake = format!(
        "#!/usr/bin/env bash\n\
         n=$(cat {polls} 2>/dev/null || echo 0); echo $((n + 1)) > {polls}\n\
         [[ $n -lt 2 ]] && exit 0\n\
         case \"$*\" in *{status}*) echo 1 ;; esac\n",
        polls = polls.display()
    );
    let kubectl = dir.path().join("kubectl");
    std::fs::write(&kubectl, fake).unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&kubectl)
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    Command::new("bash")
        .args(["deploy/kubernetes/test-job/verdict.sh", "60"])
        .env("PATH", path)
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn the_jobs_verdict_is_its_exit_code() {
    assert_eq!(verdict("succeeded"), Some(0));
    assert_eq!(verdict("failed"), Some(1));
}

/// The Job's arguments are ones `vajra-peer start` takes: with a peer that
/// is not there it fails reaching it (1), not on its options (2).
#[test]
fn the_test_jobs_arguments_are_valid_start_options() {
    let yaml = std::fs::read_to_string("deploy/kubernetes/test-job/job.yaml").unwrap();
    let args: Vec<String> = yaml
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(|a| a.trim_matches('"').to_owned())
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("start"), "{args:?}");
    let out = common::binary()
        .args(&args)
        .args(["--peer", "127.0.0.1:9"])
        .env("VAJRA_CLUSTER_SECRET", "a secret of enough bytes")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}
