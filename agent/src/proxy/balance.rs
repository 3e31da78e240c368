//! Which backend to try, pure: round robin among ready endpoints, this node's first, then the
//! others (the routing mesh); those that failed to connect recently go last, so one dead
//! endpoint costs one failed connect, not one per request. The caller tries them in order and
//! moves on when a connect fails.

use std::net::IpAddr;

/// What the choice needs to know of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub local: bool,
    pub failed_recently: bool,
}

/// Where the rotation starts: the route's round-robin counter, or a hash of the client's
/// address with `sessionAffinity: ClientIP` (the same client lands on the same backend while
/// the backends stay the same).
pub fn start(counter: usize, client: Option<IpAddr>) -> usize {
    match client {
        Some(ip) => {
            // FNV-1a: stable across processes and agents, unlike the std hasher.
            let bytes = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            }) as usize
        }
        None => counter,
    }
}

/// The indices of `backends` in the order to try them.
pub fn order(backends: &[Candidate], start: usize) -> Vec<usize> {
    let group = |local: bool, failed: bool| -> Vec<usize> {
        let members: Vec<usize> = backends
            .iter()
            .enumerate()
            .filter(|(_, c)| c.local == local && c.failed_recently == failed)
            .map(|(i, _)| i)
            .collect();
        let n = members.len();
        (0..n).map(|k| members[(start + k) % n]).collect()
    };
    let mut out = group(true, false);
    out.extend(group(false, false));
    out.extend(group(true, true));
    out.extend(group(false, true));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(local: bool, failed: bool) -> Candidate {
        Candidate {
            local,
            failed_recently: failed,
        }
    }

    #[test]
    fn local_first_round_robin_failed_last() {
        let l = c(true, false);
        let r = c(false, false);
        let lf = c(true, true);
        let rf = c(false, true);
        struct Case {
            name: &'static str,
            backends: Vec<Candidate>,
            start: usize,
            want: Vec<usize>,
        }
        let cases = [
            Case {
                name: "no backends",
                backends: vec![],
                start: 3,
                want: vec![],
            },
            Case {
                name: "remote only, rotated",
                backends: vec![r, r, r],
                start: 1,
                want: vec![1, 2, 0],
            },
            Case {
                name: "local ones first, each group rotated",
                backends: vec![r, l, r, l],
                start: 1,
                want: vec![3, 1, 2, 0],
            },
            Case {
                name: "recently failed go last, local before remote",
                backends: vec![lf, r, rf, l],
                start: 0,
                want: vec![3, 1, 0, 2],
            },
        ];
        for case in cases {
            assert_eq!(
                order(&case.backends, case.start),
                case.want,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn successive_counters_spread_over_every_backend() {
        let backends = vec![c(false, false); 3];
        let firsts: Vec<usize> = (0..6).map(|n| order(&backends, n)[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn client_ip_affinity_is_stable_per_client() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(start(0, Some(a)), start(99, Some(a)));
        assert_ne!(start(0, Some(a)), start(0, Some(b)));
        assert_eq!(start(7, None), 7);
    }
}
