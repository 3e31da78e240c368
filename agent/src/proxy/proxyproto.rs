//! The PROXY protocol v2 header (HAProxy's spec), sent first on a TCP connection to a backend so
//! that it learns the client's address; opt in per Service (annotation `edge.dev/proxy-protocol:
//! v2`), since a backend that does not expect it would read it as garbage.

use std::net::SocketAddr;

const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The header for a proxied TCP connection from `source` to `destination`.
pub fn header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(0x21); // version 2, command PROXY
    let (family, addresses) = match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            let mut a = s.ip().octets().to_vec();
            a.extend_from_slice(&d.ip().octets());
            (0x11, a) // TCP over IPv4
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped().octets(),
                SocketAddr::V6(v6) => v6.ip().octets(),
            };
            let mut a = v6(s).to_vec();
            a.extend_from_slice(&v6(d));
            (0x21, a) // TCP over IPv6
        }
    };
    out.push(family);
    let len = (addresses.len() + 4) as u16;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&addresses);
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_matches_the_spec() {
        let h = header(
            "192.0.2.1:40000".parse().unwrap(),
            "10.0.0.5:30080".parse().unwrap(),
        );
        let mut want = SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]);
        want.extend_from_slice(&[192, 0, 2, 1, 10, 0, 0, 5]);
        want.extend_from_slice(&40000u16.to_be_bytes());
        want.extend_from_slice(&30080u16.to_be_bytes());
        assert_eq!(h, want);
        assert_eq!(h.len(), 28);
    }

    #[test]
    fn mixed_families_use_ipv6_with_mapped_addresses() {
        let h = header(
            "[2001:db8::1]:1000".parse().unwrap(),
            "10.0.0.5:80".parse().unwrap(),
        );
        assert_eq!(h[13], 0x21);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 36);
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(
            &h[32..48],
            &"::ffff:10.0.0.5"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
    }
}
