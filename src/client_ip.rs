//! Trusted proxies (a list of networks) and the client IP they vouch for in
//! `X-Forwarded-For`: the right-most address not added by a trusted proxy. Pure; no headers
//! are trusted unless the TCP peer itself is a trusted proxy.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

/// Most `X-Forwarded-For` entries looked at, right to left: 64. Real chains are a few hops;
/// the cap bounds the work a client can cause with a long header.
pub const MAX_XFF_ENTRIES: usize = 64;

/// Longest `X-Forwarded-For` entry parsed: 64 bytes (`[IPv6]:port` is at most 53).
/// Longer entries are malformed without being looked at.
pub const MAX_XFF_ENTRY_LEN: usize = 64;

/// A set of trusted proxy networks. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), in the list
/// or from a socket, are treated as IPv4. Lookup is a linear scan: lists are a handful long.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// In config order; IPv4-mapped networks already turned into IPv4 ones.
    networks: Vec<IpNet>,
}

// === impl TrustedProxies ===

impl TrustedProxies {
    /// The networks as parsed by [`parse_network`].
    pub fn new(networks: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies { networks }
    }

    /// The networks in config order, for `wsguard check`.
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client IP, given the TCP peer and every `X-Forwarded-For` value in header order.
    ///
    /// An untrusted peer is the client: its headers are ignored. Otherwise the entries (all
    /// values, comma-separated, empty ones skipped but counted) are walked from the right, each one written
    /// by the hop to its right: the first address that is not a trusted proxy is the client.
    /// If every entry is trusted, the left-most is. A malformed entry (not an IP, `IP:port`
    /// or `[IPv6]:port`) stops the walk: the answer is the last good address before it, i.e.
    /// the trusted hop that wrote it (the peer if it is the right-most), since nothing to its
    /// left can be trusted. At most [`MAX_XFF_ENTRIES`] entries are looked at; past that the
    /// last one looked at is the answer. Results are canonical (IPv4-mapped → IPv4).
    pub fn client_ip(&self, peer: IpAddr, xff: &[&[u8]]) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let entries = xff
            .iter()
            .rev()
            .flat_map(|value| value.rsplit(|&b| b == b','))
            .take(MAX_XFF_ENTRIES)
            .map(|e| e.trim_ascii())
            .filter(|e| !e.is_empty());
        let mut last_good = peer;
        for entry in entries {
            let Some(ip) = parse_xff_entry(entry) else {
                return last_good;
            };
            if !self.contains(ip) {
                return ip;
            }
            last_good = ip;
        }
        last_good
    }
}

/// One `[limits] trusted_proxies` entry: a CIDR (`10.0.0.0/8`, `::1/128`) or a bare address
/// (`127.0.0.1` = `/32`, `::1` = `/128`); surrounding spaces are ignored. Host bits must be
/// zero, and an IPv4-mapped network (`::ffff:10.0.0.0/104`) becomes the IPv4 one. The error
/// repeats the entry and says the fix.
pub fn parse_network(entry: &str) -> Result<IpNet, String> {
    let s = entry.trim();
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| {
        format!("{s:?} is not an IP address or CIDR; write e.g. \"10.0.0.0/8\", \"::1/128\" or \"127.0.0.1\"")
    })?;
    let net = match len {
        None => IpNet::from(ip),
        Some(l) => prefix_len(l)
            .and_then(|n| IpNet::new(ip, n).ok())
            .ok_or_else(|| {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                format!("{s:?}: prefix length must be 0-{max}")
            })?,
    };
    let net = unmap(net);
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; write \"{}\"",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Decimal digits without a leading zero ("08" could be read as octal), at most 3 of them.
fn prefix_len(s: &str) -> Option<u8> {
    let digits = !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// `::ffff:a.b.c.d/96+n` is `a.b.c.d/n`: sockets report IPv4 peers of a dual-stack listener
/// in that form, and [`TrustedProxies::contains`] compares them as IPv4.
fn unmap(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// One `X-Forwarded-For` entry: `IPv4`, `IPv6`, `IPv4:port`, `[IPv6]` or `[IPv6]:port`.
fn parse_xff_entry(entry: &[u8]) -> Option<IpAddr> {
    if entry.len() > MAX_XFF_ENTRY_LEN {
        return None;
    }
    let s = std::str::from_utf8(entry).ok()?;
    let ip = if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !after.is_empty() {
            port(after.strip_prefix(':')?)?;
        }
        IpAddr::V6(inner.parse().ok()?)
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        ip
    } else {
        let (v4, p) = s.split_once(':')?;
        port(p)?;
        IpAddr::V4(v4.parse().ok()?)
    };
    Some(ip.to_canonical())
}

fn port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

// === the client of a connection ===

/// The client IP known when a connection is accepted: the address in a trusted proxy's PROXY
/// header, else the TCP peer's, unless the peer is a trusted proxy that named no client in a
/// PROXY header. Then it is `None`: each request's `X-Forwarded-For` names the client
/// ([`forwarded_client`]), and the trusted proxy's own address is never limited as a client.
pub fn client_at_accept(
    trusted: &TrustedProxies,
    peer: IpAddr,
    proxy_header: Option<IpAddr>,
) -> Option<IpAddr> {
    match proxy_header {
        Some(ip) => Some(ip),
        None if trusted.contains(peer) => None,
        None => Some(peer),
    }
}

/// The client IP of a request from a trusted proxy that named none in a PROXY header:
/// [`TrustedProxies::client_ip`] over every `X-Forwarded-For` line, in order.
pub fn forwarded_client(
    trusted: &TrustedProxies,
    peer: IpAddr,
    headers: &http::HeaderMap,
) -> IpAddr {
    let xff: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    trusted.client_ip(peer, &xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| parse_network(s).unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_accepts_cidrs_and_bare_addresses() {
        let cases = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("::1/128", "::1/128"),
            ("127.0.0.1", "127.0.0.1/32"),
            ("::1", "::1/128"),
            (" 192.168.0.0/16 ", "192.168.0.0/16"),
            ("fd00::/8", "fd00::/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::/0", "::/0"),
            // IPv4-mapped entries become IPv4 networks.
            ("::ffff:192.168.1.0/120", "192.168.1.0/24"),
            ("::ffff:10.0.0.1", "10.0.0.1/32"),
            ("::ffff:0:0/96", "0.0.0.0/0"),
            // Below /96 the network is more than the mapped range: it stays IPv6.
            ("::/95", "::/95"),
        ];
        for (entry, want) in cases {
            let net = parse_network(entry).unwrap_or_else(|e| panic!("{entry}: {e}"));
            assert_eq!(net.to_string(), want, "{entry}");
            assert_eq!(parse_network(want), Ok(net), "{want} parses back");
        }
        assert!(TrustedProxies::default().is_empty());
        assert!(trusted(&["::/0"]).contains(ip("2001:db8::1")));
    }

    #[test]
    fn parse_errors_say_the_fix() {
        let cases = [
            (
                "10.0.0.1/8",
                "\"10.0.0.1/8\" has host bits set; write \"10.0.0.0/8\"",
            ),
            (
                "2001:db8::1/32",
                "has host bits set; write \"2001:db8::/32\"",
            ),
            (
                "::ffff:10.0.0.1/104",
                "has host bits set; write \"10.0.0.0/8\"",
            ),
            ("nope", "\"10.0.0.0/8\", \"::1/128\" or \"127.0.0.1\""),
            ("", "is not an IP address or CIDR"),
            ("10.0.0.0/33", "prefix length must be 0-32"),
            ("::1/129", "prefix length must be 0-128"),
            ("1.2.3.4/", "prefix length must be 0-32"),
            ("1.2.3.4/08", "prefix length must be 0-32"),
            ("1.2.3.4/+8", "prefix length must be 0-32"),
            ("1.2.3.4/0032", "prefix length must be 0-32"),
            ("10.0.0.0/-1", "prefix length must be 0-32"),
            ("10.0.0.0/8/8", "prefix length must be 0-32"),
            ("010.0.0.0/8", "is not an IP address or CIDR"),
            ("10.0.0/8", "is not an IP address or CIDR"),
            ("fe80::1%eth0", "is not an IP address or CIDR"),
        ];
        for (entry, want) in cases {
            let err = parse_network(entry).expect_err(entry);
            assert!(err.contains(want), "{entry}: {err}");
        }
    }

    #[test]
    fn contains_table() {
        let t = trusted(&[
            "10.0.0.0/8",
            "2001:db8:1::/48",
            "::ffff:192.168.1.0/120",
            "127.0.0.1",
        ]);
        let cases = [
            ("10.0.0.1", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("9.255.255.255", false),
            ("::ffff:10.0.0.1", true), // IPv4-mapped peer matches the IPv4 network
            ("::ffff:11.0.0.1", false),
            ("192.168.1.77", true), // IPv4-mapped network in the list matches plain IPv4
            ("192.168.2.1", false),
            ("127.0.0.1", true),
            ("127.0.0.2", false),
            ("2001:db8:1:ffff::1", true),
            ("2001:db8:2::1", false),
            ("::a00:1", false), // IPv4-compatible (deprecated) is not IPv4-mapped
        ];
        for (addr, want) in cases {
            assert_eq!(t.contains(ip(addr)), want, "{addr}");
        }
        assert!(!TrustedProxies::default().contains(ip("127.0.0.1")));
    }

    #[test]
    fn client_ip_table() {
        let t = trusted(&["10.0.0.0/8", "fd00::/8"]);
        let long_chain: String = std::iter::repeat_n("10.1.1.1", 100)
            .collect::<Vec<_>>()
            .join(",");
        let long_chain_then_client = format!("203.0.113.5,{long_chain}");
        let cases: &[(&str, &[&str], &str)] = &[
            // Untrusted peer: headers ignored.
            ("203.0.113.1", &["198.51.100.1"], "203.0.113.1"),
            ("::ffff:203.0.113.1", &[], "203.0.113.1"),
            // Trusted peer, no header: the peer.
            ("10.0.0.1", &[], "10.0.0.1"),
            ("::ffff:10.0.0.1", &["198.51.100.7"], "198.51.100.7"),
            // One hop.
            ("10.0.0.1", &["198.51.100.7"], "198.51.100.7"),
            // Spoofed left-most entries are skipped: the right-most untrusted wins.
            (
                "10.0.0.1",
                &["1.1.1.1, 2.2.2.2, 198.51.100.7"],
                "198.51.100.7",
            ),
            (
                "10.0.0.1",
                &["1.1.1.1", "198.51.100.7, 10.0.0.2"],
                "198.51.100.7",
            ),
            (
                "10.0.0.1",
                &["127.0.0.1, 198.51.100.7,10.9.9.9 ,  fd00::5"],
                "198.51.100.7",
            ),
            // All trusted: the left-most.
            ("10.0.0.1", &["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
            // Ports and brackets.
            ("10.0.0.1", &["198.51.100.7:4711"], "198.51.100.7"),
            ("10.0.0.1", &["[2001:db8::9]:443"], "2001:db8::9"),
            ("10.0.0.1", &["[2001:db8::9]"], "2001:db8::9"),
            ("10.0.0.1", &["2001:db8::9"], "2001:db8::9"),
            ("10.0.0.1", &["::ffff:198.51.100.7"], "198.51.100.7"),
            // Empty entries are skipped.
            ("10.0.0.1", &["", " , 198.51.100.7, ,"], "198.51.100.7"),
            // Malformed stops the walk at the last good address.
            ("10.0.0.1", &["198.51.100.7, unknown"], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7, garbage, 10.0.0.2"], "10.0.0.2"),
            ("10.0.0.1", &["198.51.100.7, 10.0.0.300"], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7, 1.2.3.4:99999"], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7, [2001:db8::1]x"], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7, fe80::1%eth0"], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7, \u{fffd}"], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7, 1.2.3.4 5.6.7.8"], "10.0.0.1"),
            // Bounded: 64 entries at most.
            ("10.0.0.1", &[long_chain_then_client.as_str()], "10.1.1.1"),
        ];
        for &(peer, xff, want) in cases {
            let values: Vec<&[u8]> = xff.iter().map(|v| v.as_bytes()).collect();
            assert_eq!(
                t.client_ip(ip(peer), &values),
                ip(want),
                "peer {peer}, xff {xff:?}"
            );
        }
    }

    #[test]
    fn client_ip_survives_garbage_bytes() {
        let t = trusted(&["10.0.0.0/8"]);
        let huge = vec![b'9'; 100_000];
        let garbage: [&[u8]; 4] = [b"\xff\xfe,1.2.3.4", b"\0\r\n", &huge, b",,,,"];
        assert_eq!(t.client_ip(ip("10.0.0.1"), &garbage), ip("10.0.0.1"));
        let commas = vec![b','; 10_000];
        let with_client: [&[u8]; 2] = [b"198.51.100.7", &commas];
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), &with_client),
            ip("10.0.0.1"),
            "empty entries count"
        );
    }
}

#[cfg(test)]
mod client_of_a_connection {
    use super::*;

    #[test]
    fn known_at_accept_unless_a_trusted_proxy_leaves_it_to_the_request() {
        let trusted = TrustedProxies::new(vec![parse_network("10.0.0.0/8").unwrap()]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            ("203.0.113.1", None, Some("203.0.113.1")),
            ("10.0.0.1", Some("198.51.100.7"), Some("198.51.100.7")),
            ("10.0.0.1", None, None),
        ];
        for (peer, header, want) in cases {
            assert_eq!(
                client_at_accept(&trusted, ip(peer), header.map(ip)),
                want.map(ip),
                "{peer} {header:?}"
            );
        }
        let mut headers = http::HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6, 198.51.100.7".parse().unwrap());
        headers.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        assert_eq!(
            forwarded_client(&trusted, ip("10.0.0.1"), &headers),
            ip("198.51.100.7")
        );
    }
}
