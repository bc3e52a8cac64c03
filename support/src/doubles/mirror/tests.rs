use super::*;
use std::io::Read;

fn get(url: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new().get(url).send().unwrap()
}

#[test]
fn serves_the_release_layout() {
    let mirror = Mirror::start();
    let index: Value = get(&format!("{}/nomad/index.json", mirror.url()))
        .json()
        .unwrap();
    assert_eq!(index["name"], "nomad");
    for v in NOMAD_VERSIONS {
        let object = &index["versions"][v];
        assert_eq!(object["version"], *v);
        assert_eq!(object["builds"].as_array().unwrap().len(), 2);
    }
    let sums = get(&format!(
        "{}{}",
        mirror.url(),
        Mirror::sums_path("nomad", NOMAD_LATEST)
    ))
    .text()
    .unwrap();
    let names: Vec<&str> = sums.lines().map(|l| &l[66..]).collect();
    assert_eq!(
        names,
        [
            "nomad_1.10.5_linux_amd64.zip",
            "nomad_1.10.5_linux_arm64.zip"
        ]
    );
    assert!(sums.starts_with(&mirror.archive_sha256("nomad", NOMAD_LATEST, "amd64")));
    let sig = get(&format!(
        "{}/nomad/{NOMAD_LATEST}/nomad_{NOMAD_LATEST}_SHA256SUMS.{}.sig",
        mirror.url(),
        mirror.key_id_suffix()
    ));
    assert_eq!(sig.status(), 200);
    let missing = get(&format!(
        "{}/nomad/9.9.9/nomad_9.9.9_SHA256SUMS",
        mirror.url()
    ));
    assert_eq!(missing.status(), 404);
}

#[test]
fn zip_carries_the_binary_and_license() {
    let mirror = Mirror::start();
    let zip =
        fs::read(mirror.local(&Mirror::archive_path("consul", CONSUL_LATEST, "arm64"))).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut names: Vec<String> = archive
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["LICENSE.txt", "consul"]);
    let mut binary = Vec::new();
    archive
        .by_name("consul")
        .unwrap()
        .read_to_end(&mut binary)
        .unwrap();
    assert_eq!(binary, mirror.binary("consul", CONSUL_LATEST, "arm64"));
    assert!(String::from_utf8(binary)
        .unwrap()
        .contains("echo \"Consul v1.21.4\""));
}

#[test]
fn the_signature_verifies_with_the_exported_key() {
    use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
    let mirror = Mirror::start();
    let armored = fs::read_to_string(mirror.public_key_file()).unwrap();
    let (key, _) = SignedPublicKey::from_string(&armored).unwrap();
    key.verify_bindings().unwrap();
    let sums = fs::read(mirror.local(&Mirror::sums_path("nomad", "1.9.7"))).unwrap();
    let sig_bytes = fs::read(mirror.local("/nomad/1.9.7/nomad_1.9.7_SHA256SUMS.sig")).unwrap();
    let sig = DetachedSignature::from_bytes(&sig_bytes[..]).unwrap();
    sig.verify(&key.public_subkeys[0], &sums).unwrap();
    mirror.tamper("nomad", "1.9.7", Tamper::OtherKeySignature);
    let sig_bytes = fs::read(mirror.local("/nomad/1.9.7/nomad_1.9.7_SHA256SUMS.sig")).unwrap();
    let sig = DetachedSignature::from_bytes(&sig_bytes[..]).unwrap();
    assert!(sig.verify(&key.public_subkeys[0], &sums).is_err());
}

#[test]
fn ranges_and_failures() {
    let mirror = Mirror::start();
    let path = Mirror::archive_path("nomad", "1.10.0", "amd64");
    let url = format!("{}{path}", mirror.url());
    let full = fs::read(mirror.local(&path)).unwrap();
    let client = reqwest::blocking::Client::new();
    let partial = client
        .get(&url)
        .header("Range", "bytes=10-")
        .send()
        .unwrap();
    assert_eq!(partial.status(), 206);
    assert_eq!(partial.bytes().unwrap(), full[10..]);

    mirror.fail(
        &path,
        Failure::Status {
            code: 429,
            retry_after_secs: Some(3),
        },
        1,
    );
    let throttled = get(&url);
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "3");
    assert_eq!(get(&url).bytes().unwrap(), full);

    mirror.fail(&path, Failure::DropMidBody, 1);
    assert!(get(&url).bytes().is_err());
    mirror.fail(&path, Failure::Truncate, 1);
    assert_eq!(get(&url).bytes().unwrap().len(), full.len() / 2);

    mirror.set_range_support(false);
    let whole = client
        .get(&url)
        .header("Range", "bytes=10-")
        .send()
        .unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().unwrap(), full);
    let statuses: Vec<u16> = mirror.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [206, 429, 200, 200, 200, 200]);
}

#[test]
fn unsafe_archives_are_resigned() {
    let mirror = Mirror::start();
    mirror.tamper(
        "nomad",
        "1.10.0",
        Tamper::UnsafeArchive(UnsafeEntry::ParentDir),
    );
    let sums = fs::read_to_string(mirror.local(&Mirror::sums_path("nomad", "1.10.0"))).unwrap();
    assert!(sums.contains(&mirror.archive_sha256("nomad", "1.10.0", "amd64")));
    let zip = fs::read(mirror.local(&Mirror::archive_path("nomad", "1.10.0", "amd64"))).unwrap();
    let archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    assert!(archive.file_names().any(|n| n.unwrap() == "../escaped.txt"));
}

#[test]
fn duplicate_entries_large_binaries_and_garbage_signatures() {
    let mirror = Mirror::start();
    mirror.tamper("nomad", "1.10.0", Tamper::DuplicateEntry);
    let zip = fs::read(mirror.local(&Mirror::archive_path("nomad", "1.10.0", "amd64"))).unwrap();
    let archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    assert!(archive.has_duplicate_names());
    // A reader indexing by name sees one `nomad`: the second, foreign one.
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .collect();
    assert_eq!(names.iter().filter(|n| *n == "nomad").count(), 1);
    let sums = fs::read_to_string(mirror.local(&Mirror::sums_path("nomad", "1.10.0"))).unwrap();
    assert!(sums.contains(&mirror.archive_sha256("nomad", "1.10.0", "amd64")));

    mirror.tamper_cni("1.6.2", Tamper::DuplicateEntry);
    let tgz = fs::read(mirror.local(&Mirror::cni_archive_path("1.6.2", "amd64"))).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
    let bridges = tar
        .entries()
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().unwrap().ends_with("bridge"))
        .count();
    assert_eq!(bridges, 2);

    mirror.tamper("nomad", "1.9.7", Tamper::LargeBinary { bytes: 1 << 20 });
    let binary = mirror.binary("nomad", "1.9.7", "amd64");
    assert_eq!(binary.len(), 1 << 20);
    let zip = fs::read(mirror.local(&Mirror::archive_path("nomad", "1.9.7", "amd64"))).unwrap();
    assert!(zip.len() < 64 << 10, "{} bytes", zip.len());
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("nomad"), &binary).unwrap();
    let out = std::process::Command::new("sh")
        .arg(dir.path().join("nomad"))
        .arg("version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Nomad v1.9.7\n"));

    mirror.set_signatures("nomad", "1.9.7", b"garbage");
    let sig = fs::read(mirror.local("/nomad/1.9.7/nomad_1.9.7_SHA256SUMS.sig")).unwrap();
    assert_eq!(sig, b"garbage");
}

#[test]
fn misbehaving_transports() {
    let mirror = Mirror::start();
    let path = Mirror::archive_path("nomad", "1.10.0", "amd64");
    let url = format!("{}{path}", mirror.url());
    let full = fs::read(mirror.local(&path)).unwrap();

    mirror.fail(&path, Failure::EndlessErrorBody { code: 503 }, 1);
    let endless = get(&url);
    assert_eq!(endless.status(), 503);
    assert!(endless.headers().get("content-length").is_none());
    let mut prefix = Vec::new();
    endless.take(1 << 20).read_to_end(&mut prefix).unwrap();
    assert_eq!(prefix.len(), 1 << 20, "it keeps sending");

    mirror.fail(
        &path,
        Failure::Redirect {
            location: "http://localhost:1/elsewhere.zip".into(),
        },
        1,
    );
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let moved = client.get(&url).send().unwrap();
    assert_eq!(moved.status(), 302);
    assert_eq!(
        moved.headers()["location"],
        "http://localhost:1/elsewhere.zip"
    );

    mirror.fail(&path, Failure::Trickle { pause_ms: 5 }, 1);
    let started = std::time::Instant::now();
    let trickled = get(&url);
    assert_eq!(
        trickled.content_length(),
        Some(full.len() as u64),
        "the whole length is announced"
    );
    let mut first = [0u8; 4];
    trickled.take(4).read_exact(&mut first).unwrap();
    assert_eq!(first, full[..4]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(15));
    let statuses: Vec<u16> = mirror.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 302, 200]);
}

#[test]
fn cni_layout() {
    let mirror = Mirror::start();
    let url = format!(
        "{}/v1.6.2/cni-plugins-linux-arm64-v1.6.2.tgz",
        mirror.cni_url()
    );
    let tgz = get(&url).bytes().unwrap();
    assert_eq!(sha256_hex(&tgz), mirror.cni_sha256("1.6.2", "arm64"));
    let side = get(&format!("{url}.sha256")).text().unwrap();
    assert_eq!(
        side,
        format!("{}  cni-plugins-linux-arm64-v1.6.2.tgz\n", sha256_hex(&tgz))
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"./bridge".to_string()), "{names:?}");
    assert!(names.contains(&"./LICENSE".to_string()), "{names:?}");
}

#[test]
fn the_fake_binary_runs() {
    let mirror = Mirror::start();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("nomad");
    fs::write(&bin, mirror.binary("nomad", NOMAD_LATEST, "amd64")).unwrap();
    let out = std::process::Command::new("sh")
        .arg(&bin)
        .arg("version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Nomad v1.10.5\n"));
}
