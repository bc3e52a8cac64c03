//! The SSH public key (`key_data`): the key types Azure accepts for a Linux VM, checked by
//! decoding the key body.
//!
//! Azure takes SSH-2 RSA keys of at least 2048 bits and Ed25519 keys ("Supported SSH key
//! formats", Azure Linux VM documentation); ECDSA and DSA keys, and FIDO security keys
//! (`sk-*`), are refused at deployment. The body (RFC 4253 section 6.6, RFC 8709 section 4) is
//! a sequence of SSH strings (4-byte big-endian length, then the bytes): the type name again,
//! then for RSA the public exponent and the modulus as `mpint`s, for Ed25519 the 32-byte key.

use base64::Engine;

use super::{bad, Problem};

/// The smallest RSA modulus Azure accepts.
pub const MIN_RSA_BITS: usize = 2048;

/// What a key line holds, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshKey {
    Rsa { bits: usize },
    Ed25519,
}

fn problem(why: &str) -> Problem {
    bad(
        "key_data",
        format!(
            "{why}: give the OpenSSH public key line of an Ed25519 key or an RSA key of at least \
             {MIN_RSA_BITS} bits (the content of ~/.ssh/id_ed25519.pub, \"ssh-ed25519 AAAA... \
             comment\"); password login is disabled, so this key is the only way in"
        ),
    )
}

/// Reads one SSH string from the front of `bytes`, returning it and the rest.
fn ssh_string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let rest = bytes.get(4..)?;
    Some((rest.get(..len)?, rest.get(len..)?))
}

/// The bit length of a positive `mpint` (leading zero bytes, which keep it positive, ignored).
fn mpint_bits(value: &[u8]) -> usize {
    let trimmed: &[u8] = match value.iter().position(|b| *b != 0) {
        Some(first) => &value[first..],
        None => &[],
    };
    match trimmed.first() {
        Some(top) => trimmed.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    }
}

/// Checks a public key line and says what it is.
pub fn check_ssh_key(key: &str) -> Result<SshKey, Problem> {
    let key = key.trim();
    if key.is_empty() {
        return Err(problem("is empty"));
    }
    if key.contains("PRIVATE KEY") {
        return Err(problem("holds a PRIVATE key"));
    }
    if key.contains(['\n', '\r']) {
        return Err(problem("holds more than one line (one key only)"));
    }
    let mut words = key.split_whitespace();
    let kind = words.next().unwrap_or_default();
    let blob = words.next().unwrap_or_default();
    match kind {
        "ssh-rsa" | "ssh-ed25519" => {}
        k if k.starts_with("ecdsa-sha2-") => {
            return Err(problem(&format!(
                "is an ECDSA key ({k}), which Azure refuses for Linux VMs"
            )))
        }
        "ssh-dss" => return Err(problem("is a DSA key, which Azure refuses for Linux VMs")),
        k if k.starts_with("sk-") => {
            return Err(problem(&format!(
                "is a FIDO security key ({k}), which Azure refuses for Linux VMs"
            )))
        }
        other => {
            return Err(problem(&format!(
                "starts with {other:?}, not \"ssh-ed25519\" or \"ssh-rsa\""
            )))
        }
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(blob) else {
        return Err(problem("has a key body that is not base64"));
    };
    let not_a = || problem(&format!("has a key body that is not a {kind} key"));
    let (name, rest) = ssh_string(&bytes).ok_or_else(not_a)?;
    if name != kind.as_bytes() {
        return Err(not_a());
    }
    match kind {
        "ssh-rsa" => {
            let (exponent, rest) = ssh_string(rest).ok_or_else(not_a)?;
            let (modulus, rest) = ssh_string(rest).ok_or_else(not_a)?;
            if !rest.is_empty() || mpint_bits(exponent) == 0 {
                return Err(not_a());
            }
            let bits = mpint_bits(modulus);
            if bits < MIN_RSA_BITS {
                return Err(problem(&format!(
                    "is a {bits}-bit RSA key; Azure requires at least {MIN_RSA_BITS} bits"
                )));
            }
            Ok(SshKey::Rsa { bits })
        }
        _ => {
            let (point, rest) = ssh_string(rest).ok_or_else(not_a)?;
            if point.len() != 32 || !rest.is_empty() {
                return Err(not_a());
            }
            Ok(SshKey::Ed25519)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // Generated with ssh-keygen for these tests (public halves only).
    pub const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPyLGZoOJxCX/QefXQ6DsqUVGx4Yu6CRbDt8Ejl10bwH operator@example";
    pub const RSA_2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC8vmLBH8s7/eXI5CejxjLQx9FMKLPohx2cjUmCI24F4RKs/AyQfTNWtt8slpg70RBnNE/rU32RGpLVQeo1Nsx5OJl9mOqCV6s4CexTD467xYBfplucwBMs/geqOj5c7isT0ezeTyK89tfbIZzcqVUQ1qJeM4rC21PFqioAeByPl76xaxQLmsOAsKZWSGeSdyvIhML6PecmxyTVkXwd5yHvp2LkEtxBHLvmFc4wgjM3Q3d9ir5oYxu+Xx0d4Y4Im8Jm/h5sIb4ipaXev5220ghYUZm3F2jBwDmBgi8+CVUPhBpYtDJE7kyrs50OmlbjA0zO8hjHDG3VR0BOG0SDzUO1 rsa2048@example";
    pub const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQD4zi9TzMn7Qy9/HALjQlT195kYuwjbjE+HRwxCYjB0ij3HkDUeN8UNqTmwXb5SyJMGU89CJW82uDKhb3ieXsclQqQWFv/zjyMjzAvd0ShWuz8bo2j4jFX61D8pfq7jYhM9ZUsFYQYeWEC0zfBHgW8LeCM+Z0n5OfUMyKOlTgX8bQ== rsa1024@example";
    pub const RSA_4096: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAACAQD1SL78OmJW3MFQVchxG6/Titt/wBC9Gc9ND3KF7+nq+P+1FtlFpUOZBL71/Uw2Ns/vSevJB53kaReS/a2DihIw7D3ikXmIyNQx+ZS7HzkrPwI2Q1Q7GKQT7exbk4XNSPwvmiXpwhVqJbKC3YTEsG9XZ6aVQ6fApa9yhHkYFKOHTDoLU35D/f8zeXJe2Ria0d0RzKmNqdoS/p81I7neS133oA4fBgsz55676p0ZKcvNFoCPTd789R9d03WSlzPnixaGCckV6hY1voMaeC4Q8iHkUPUmqppurvsXihpIvLhFBypZ998uyvW17PuxtUCRLqtb2XRWXOOsAPSgdCXIl6Z/IQcyUBNcEoO/5j5OVX87mkyrLcciKXD9IiXRGeAo8pLSav8OiF64ppaUVwfhtcBXZPl1rCAKzCLfecoiv/ZCby+mjrp0N0uZ7s5XlGtYpFdgCvJTbvn1FT5rG1ZcH5eoPFFnOXYhPah4T7rv+ILagY3f8gnTVZ/NthZcErynNnY/rOjWlVOkZ9wSjUoCgphRSkAd1Hp9ebpwp0vYrq5C5iBwOc9nc27wxNZPiiKSGjEEMhYJSpqB6pvNV5MdxapJj3KTsFOr1+5oS6oA3/fBJTUoadP++7xrOwP9VPYMg7xzT5Gk29PhRJrv05Qj/sb9toeiz5fmVsBpjGD5+g2fuw== rsa4096@example";
    pub const ECDSA_256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBB1hNB5JjQ8JviJnd3tAMadNcfmtV5/dh/O3t6GN5J25bFVtc65SDXzDxGdCb7i8Mhs84IotIuKoxzzzcyH6ZCI= ecdsa@example";

    fn refused(key: &str) -> String {
        check_ssh_key(key).unwrap_err().1
    }

    #[test]
    fn ed25519_and_rsa_of_2048_bits_or_more_are_accepted() {
        assert_eq!(check_ssh_key(ED25519).unwrap(), SshKey::Ed25519);
        assert_eq!(check_ssh_key(RSA_2048).unwrap(), SshKey::Rsa { bits: 2048 });
        assert_eq!(check_ssh_key(RSA_4096).unwrap(), SshKey::Rsa { bits: 4096 });
        // No comment is fine too.
        let bare = RSA_2048.rsplit_once(' ').unwrap().0;
        assert!(check_ssh_key(bare).is_ok());
    }

    #[test]
    fn short_rsa_keys_are_refused_by_their_modulus() {
        let text = refused(RSA_1024);
        assert!(text.contains("1024-bit RSA key"), "{text}");
        assert!(text.contains("at least 2048"), "{text}");
    }

    #[test]
    fn ecdsa_dsa_and_security_keys_are_refused() {
        let text = refused(ECDSA_256);
        assert!(text.contains("ECDSA"), "{text}");
        assert!(refused("ssh-dss AAAAB3NzaC1kc3M=").contains("DSA"));
        assert!(refused("sk-ssh-ed25519@openssh.com AAAA").contains("security key"));
    }

    #[test]
    fn bodies_that_do_not_match_their_type_are_refused() {
        // An Ed25519 body under the RSA name, and a truncated RSA body.
        let ed_body = ED25519.split(' ').nth(1).unwrap();
        assert!(refused(&format!("ssh-rsa {ed_body}")).contains("not a ssh-rsa key"));
        let rsa_body = RSA_2048.split(' ').nth(1).unwrap();
        let truncated = &rsa_body[..rsa_body.len() - 40];
        let text = refused(&format!("ssh-rsa {truncated}"));
        assert!(
            text.contains("not base64") || text.contains("not a ssh-rsa key"),
            "{text}"
        );
        assert!(refused("ssh-ed25519 !!!").contains("not base64"));
        assert!(refused(&format!("{ED25519}\n{RSA_2048}")).contains("more than one line"));
    }

    #[test]
    fn mpint_lengths_ignore_the_sign_byte() {
        assert_eq!(mpint_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(mpint_bits(&[0x01, 0x00, 0x01]), 17);
        assert_eq!(mpint_bits(&[0x00]), 0);
    }
}
