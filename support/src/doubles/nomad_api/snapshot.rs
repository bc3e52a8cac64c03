//! `GET /v1/operator/snapshot` bodies: Nomad's snapshot format (hashicorp/nomad
//! helper/snapshot/archive.go and snapshot.go): a gzip-compressed tar of `meta.json` (Raft's
//! SnapshotMeta), `state.bin` (the FSM state) and `SHA256SUMS` of those two, sent with
//! `Digest: sha-256=<base64 of the SHA-256 of the whole gzip body>`.

use std::io::Write;

use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::doubles::nomad_sim::{Cluster, RPC_PORT};

/// The snapshot archive of the cluster now, with `state_bytes` of (deterministic) state.
pub(crate) fn archive(cluster: &Cluster, state_bytes: usize) -> Vec<u8> {
    let servers: Vec<_> = cluster
        .raft
        .iter()
        .filter_map(|(id, voter)| {
            cluster.server_by_id(id).map(|s| {
                json!({
                    "Suffrage": if *voter { 0 } else { 1 },
                    "ID": id,
                    "Address": format!("{}:{RPC_PORT}", s.ip),
                })
            })
        })
        .collect();
    let state: Vec<u8> = (0..state_bytes)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect();
    let meta = json!({
        "Version": 1,
        "ID": format!("{}-{}-{}", cluster.term, cluster.index, cluster.now.millis()),
        "Index": cluster.index,
        "Term": cluster.term,
        "Peers": base64::engine::general_purpose::STANDARD.encode(b"\x00"),
        "Configuration": { "Servers": servers },
        "ConfigurationIndex": cluster.raft_config_index,
        "Size": state.len(),
    });
    let mut meta_bytes = meta.to_string().into_bytes();
    meta_bytes.push(b'\n');
    let sums = format!(
        "{}  meta.json\n{}  state.bin\n",
        crate::hash::sha256_hex(&meta_bytes),
        crate::hash::sha256_hex(&state)
    );
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in [
        ("meta.json", meta_bytes.as_slice()),
        ("state.bin", state.as_slice()),
        ("SHA256SUMS", sums.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(cluster.now.unix_seconds() as u64);
        header.set_cksum();
        tar.append_data(&mut header, name, data)
            .expect("writing the snapshot tar");
    }
    let mut gz = tar.into_inner().expect("finishing the snapshot tar");
    gz.flush().expect("flushing the gzip stream");
    gz.finish().expect("finishing the gzip stream")
}

/// The `Digest` header value for a body.
pub(crate) fn digest(body: &[u8]) -> String {
    format!(
        "sha-256={}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body))
    )
}
