//! Client identifiers and the shared-data keys built from them.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Identifiers longer than this are replaced by a 128-bit hash in the key, so
/// keys stay bounded whatever a header holds.
pub const MAX_IDENTIFIER_BYTES: usize = 64;

/// 64-bit FNV-1a with a chosen offset basis.
fn fnv1a(bytes: &[u8], basis: u64) -> u64 {
    let mut hash = basis;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // A final mix spreads FNV's weak low bits over the whole word.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

/// Returns a 64-bit hash of `bytes`, stable across builds of this filter.
pub fn hash64(bytes: &[u8]) -> u64 {
    fnv1a(bytes, 0xcbf2_9ce4_8422_2325)
}

/// Returns a second, independent 64-bit hash of `bytes`.
fn hash64_alt(bytes: &[u8]) -> u64 {
    fnv1a(bytes, 0x6c62_272e_07bb_0142)
}

/// Appends `bytes` to `key`, escaping anything outside printable ASCII, or
/// appends a hash when `bytes` is too long.
pub fn push_identifier(key: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > MAX_IDENTIFIER_BYTES {
        key.extend_from_slice(
            format!("#{:016x}{:016x}", hash64(bytes), hash64_alt(bytes)).as_bytes(),
        );
        return;
    }
    for byte in bytes {
        if byte.is_ascii_graphic() && *byte != b'%' {
            key.push(*byte);
        } else {
            key.extend_from_slice(format!("%{byte:02x}").as_bytes());
        }
    }
}

/// Parses a client address as Kong serves it (`1.2.3.4`, `::1`) or as Envoy
/// does (`1.2.3.4:5678`, `[::1]:5678`), with or without brackets.
pub fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Returns the canonical text of a client address: IPv4-mapped IPv6 becomes
/// IPv4, and IPv6 is cut to `prefix_length` bits so one network can share a
/// counter.
pub fn canonical_address(ip: IpAddr, prefix_length: u8) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.to_string();
            }
            if prefix_length >= 128 {
                return v6.to_string();
            }
            let bits = u128::from(v6);
            let mask = u128::MAX << (128 - u32::from(prefix_length));
            format!("{}/{prefix_length}", Ipv6Addr::from(bits & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kong_and_envoy_forms() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(parse_address("10.1.2.3"), Some(v4));
        assert_eq!(parse_address("10.1.2.3:443"), Some(v4));
        assert_eq!(parse_address("2001:db8::1"), Some(v6));
        assert_eq!(parse_address("[2001:db8::1]"), Some(v6));
        assert_eq!(parse_address("[2001:db8::1]:8080"), Some(v6));
        assert_eq!(parse_address("unix:/tmp/sock"), None);
        assert_eq!(parse_address(""), None);
    }

    #[test]
    fn ipv6_clients_stay_apart_unless_grouped() {
        let a = parse_address("2001:db8::1").unwrap();
        let b = parse_address("2001:db8::2").unwrap();
        assert_ne!(canonical_address(a, 128), canonical_address(b, 128));
        assert_eq!(canonical_address(a, 64), "2001:db8::/64");
        assert_eq!(canonical_address(a, 64), canonical_address(b, 64));
        let other_net = parse_address("2001:db8:0:1::1").unwrap();
        assert_ne!(canonical_address(a, 64), canonical_address(other_net, 64));
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let mapped = parse_address("::ffff:10.0.0.1").unwrap();
        assert_eq!(canonical_address(mapped, 64), "10.0.0.1");
    }

    #[test]
    fn identifiers_are_escaped_and_bounded() {
        let mut key = Vec::new();
        push_identifier(&mut key, b"a b/\xff%");
        assert_eq!(key, b"a%20b/%ff%25".to_vec());
        let mut long = Vec::new();
        push_identifier(&mut long, &[b'x'; 10_000]);
        assert_eq!(long.len(), 33);
        let mut other = Vec::new();
        let mut different = vec![b'x'; 10_000];
        different[5000] = b'y';
        push_identifier(&mut other, &different);
        assert_ne!(long, other);
    }
}
