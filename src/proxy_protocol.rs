//! PROXY protocol v1 (text) and v2 (binary) header parser: sans-I/O, strict, bounded.
//! Spec: HAProxy's "The PROXY protocol, Versions 1 & 2"
//! (<https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest v1 header, CRLF included: 107 bytes, the spec's own limit ("PROXY UNKNOWN" with
/// two full IPv6 addresses and ports). No CRLF by then is an error, not a reason to read on.
pub const V1_MAX_LEN: usize = 107;

/// Longest v2 header wsguard accepts: 536 bytes (16 fixed + 520 of addresses and TLVs).
/// That holds the largest address block (216, AF_UNIX) and 300+ bytes of TLVs, more than
/// load balancers send (ALPN, authority, unique ID ≤ 128, SSL and cloud endpoint IDs). The
/// length field alone allows 64 KiB; a header above the cap is refused from its first 16
/// bytes, before it is read.
pub const V2_MAX_LEN: usize = 536;

/// The 12-byte v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

const V1_PREFIX: &[u8] = b"PROXY ";
/// Shortest header of either version: v1 "PROXY UNKNOWN\r\n" (v2's fixed part is 16).
const MIN_LEN: usize = 15;
const V2_FIXED_LEN: usize = 16;

/// Result of [`parse`] on the bytes read so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A valid prefix of a header below the cap: read `need` more bytes (at least 1) and call
    /// again with all bytes. `need` never reaches past the end of a valid header, so reading
    /// exactly that many leaves the client's first TLS or HTTP bytes in the socket.
    Incomplete { need: usize },
    /// A whole header: the first `consumed` bytes are the header; the stream goes on after
    /// them. `source` is the client's address; `None` for v1 `UNKNOWN`, v2 `LOCAL` (health
    /// checks), and v2 families without an IP (UNSPEC, UNIX): use the TCP peer then.
    Done {
        consumed: usize,
        source: Option<SocketAddr>,
    },
}

/// A malformed header. Each variant is one rule; the answer to all is closing the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeaderError {
    /// Starts with neither `PROXY ` (v1) nor the v2 signature.
    NotProxyHeader,
    /// v1: no CRLF within [`V1_MAX_LEN`] bytes.
    V1TooLong,
    /// v1: a byte other than letters, digits, `.`, `:`, space, or a CR not followed by LF.
    V1BadCharacter { byte: u8 },
    /// v1: the line ends in a bare LF.
    V1BadLineEnd,
    /// v1: the protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    V1UnknownProtocol,
    /// v1: a TCP line is not `PROXY TCPx SRC DST SPORT DPORT` with single spaces.
    V1BadFields,
    /// v1: an address is not an IPv4 (TCP4) or IPv6 (TCP6) address in canonical text.
    V1BadAddress,
    /// v1: a port is not decimal 0–65535 without leading zeros.
    V1BadPort,
    /// v2: the version nibble is not 2.
    V2BadVersion { version: u8 },
    /// v2: the command nibble is neither LOCAL (0) nor PROXY (1).
    V2BadCommand { command: u8 },
    /// v2: the family/transport byte is not one of the seven the spec defines.
    V2BadFamily { byte: u8 },
    /// v2: PROXY for a datagram transport; wsguard relays TCP only.
    V2NotStream,
    /// v2: the declared length makes the header longer than [`V2_MAX_LEN`].
    V2TooLong { len: usize, max: usize },
    /// v2: the address block is shorter than its family needs.
    V2AddressTruncated { need: usize, have: usize },
    /// v2: the TLVs after the addresses do not exactly fill the declared length.
    V2BadTlv,
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProxyHeaderError::*;
        match self {
            NotProxyHeader => {
                f.write_str("expected a PROXY protocol header (\"PROXY \" or the v2 signature)")
            }
            V1TooLong => write!(f, "PROXY v1 header has no CRLF within {V1_MAX_LEN} bytes"),
            V1BadCharacter { byte } => {
                write!(f, "PROXY v1 header has a forbidden byte 0x{byte:02x}")
            }
            V1BadLineEnd => f.write_str("PROXY v1 header must end with CRLF"),
            V1UnknownProtocol => f.write_str("PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN"),
            V1BadFields => f.write_str("PROXY v1 line must be \"PROXY TCPx SRC DST SPORT DPORT\""),
            V1BadAddress => f.write_str("PROXY v1 address does not match its family (TCP4/TCP6)"),
            V1BadPort => f.write_str("PROXY v1 port must be decimal 0-65535 without leading zeros"),
            V2BadVersion { version } => write!(f, "PROXY v2 version must be 2, got {version}"),
            V2BadCommand { command } => {
                write!(f, "PROXY v2 command must be LOCAL or PROXY, got {command}")
            }
            V2BadFamily { byte } => {
                write!(f, "PROXY v2 family/transport 0x{byte:02x} is not defined")
            }
            V2NotStream => f.write_str("PROXY v2 transport must be STREAM (TCP)"),
            V2TooLong { len, max } => write!(
                f,
                "PROXY v2 header of {len} bytes is over the {max}-byte cap"
            ),
            V2AddressTruncated { need, have } => {
                write!(
                    f,
                    "PROXY v2 address block has {have} bytes, its family needs {need}"
                )
            }
            V2BadTlv => f.write_str("PROXY v2 TLVs do not exactly fill the header"),
        }
    }
}

impl std::error::Error for ProxyHeaderError {}

/// Whether `buf` (a peer's first bytes) starts with a whole v1 or v2 signature: a PROXY
/// header, even if it is not valid after that.
pub fn starts_with_signature(buf: &[u8]) -> bool {
    buf.starts_with(V1_PREFIX) || buf.starts_with(&V2_SIGNATURE)
}

/// Parses a PROXY header at the start of `buf` (all bytes read so far on the connection).
/// Reads at most [`V1_MAX_LEN`] or [`V2_MAX_LEN`] bytes; `Incomplete` only below that cap.
/// Errors as soon as the prefix read so far cannot start a valid header.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete { need: MIN_LEN }),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyHeaderError::NotProxyHeader),
    }
}

fn starts_like(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf[..n] == prefix[..n]
}

// === v1 ===

fn v1_char_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b' ')
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    use ProxyHeaderError::*;
    let head = &buf[..buf.len().min(V1_MAX_LEN)];
    if !starts_like(head, V1_PREFIX) {
        return Err(NotProxyHeader);
    }
    let Some(lf) = head.iter().position(|&b| b == b'\n') else {
        return v1_before_line_end(head);
    };
    // The bytes before the LF are judged as they were when read without it, so a header
    // gets the same error however much of it was read.
    v1_before_line_end(&head[..lf])?;
    let line = head[..lf].strip_suffix(b"\r").ok_or(V1BadLineEnd)?;
    let consumed = lf + 1;
    // Only allowed ASCII bytes are left, so this cannot fail.
    let line = std::str::from_utf8(line).map_err(|_| V1BadFields)?;
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.get(1).copied() {
        Some("UNKNOWN") => None, // the spec says to ignore the rest of the line
        Some(proto @ ("TCP4" | "TCP6")) => {
            let [_, _, src, dst, sport, dport] = fields[..] else {
                return Err(V1BadFields);
            };
            let v4 = proto == "TCP4";
            let src = v1_addr(src, v4)?;
            v1_addr(dst, v4)?;
            let sport = v1_port(sport)?;
            v1_port(dport)?;
            Some(SocketAddr::new(src, sport))
        }
        _ => return Err(V1UnknownProtocol),
    };
    Ok(Parsed::Done { consumed, source })
}

/// A v1 header without its LF yet: every byte must be allowed, a CR only as the last one
/// (awaiting its LF), and the CRLF must still fit under the cap.
fn v1_before_line_end(head: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let body = head.strip_suffix(b"\r").unwrap_or(head);
    if let Some(&byte) = body.iter().find(|&&b| !v1_char_ok(b)) {
        return Err(ProxyHeaderError::V1BadCharacter { byte });
    }
    // With one byte of room left, that byte must be the LF.
    let room = V1_MAX_LEN - head.len();
    let crlf_left = if head.ends_with(b"\r") { 1 } else { 2 };
    if room < crlf_left {
        Err(ProxyHeaderError::V1TooLong)
    } else {
        Ok(Parsed::Incomplete {
            need: MIN_LEN.saturating_sub(head.len()).max(crlf_left),
        })
    }
}

fn v1_addr(s: &str, v4: bool) -> Result<IpAddr, ProxyHeaderError> {
    // std's parsers refuse leading zeros in IPv4 octets and zone IDs.
    let ip = if v4 {
        s.parse::<Ipv4Addr>().map(IpAddr::V4)
    } else {
        s.parse::<Ipv6Addr>().map(IpAddr::V6)
    };
    ip.map_err(|_| ProxyHeaderError::V1BadAddress)
}

fn v1_port(s: &str) -> Result<u16, ProxyHeaderError> {
    let canonical = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !canonical || (s.len() > 1 && s.starts_with('0')) {
        return Err(ProxyHeaderError::V1BadPort);
    }
    s.parse().map_err(|_| ProxyHeaderError::V1BadPort)
}

// === v2 ===

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    use ProxyHeaderError::*;
    if !starts_like(buf, &V2_SIGNATURE) {
        return Err(NotProxyHeader);
    }
    // Up to its length field, the rest of the fixed part is certainly header.
    let fixed_part = Parsed::Incomplete {
        need: V2_FIXED_LEN.saturating_sub(buf.len()),
    };
    let local = match buf.get(12) {
        None => return Ok(fixed_part),
        Some(&ver_cmd) => {
            let (version, command) = (ver_cmd >> 4, ver_cmd & 0x0f);
            if version != 2 {
                return Err(V2BadVersion { version });
            }
            if command > 1 {
                return Err(V2BadCommand { command });
            }
            command == 0
        }
    };
    let Some(&family) = buf.get(13) else {
        return Ok(fixed_part);
    };
    // LOCAL: the spec says to discard the whole block, family included.
    if !local {
        match family {
            0x00 | 0x11 | 0x21 | 0x31 => {}
            0x12 | 0x22 | 0x32 => return Err(V2NotStream),
            byte => return Err(V2BadFamily { byte }),
        }
    }
    let [Some(&hi), Some(&lo)] = [buf.get(14), buf.get(15)] else {
        return Ok(fixed_part);
    };
    let total = V2_FIXED_LEN + usize::from(u16::from_be_bytes([hi, lo]));
    if total > V2_MAX_LEN {
        return Err(V2TooLong {
            len: total,
            max: V2_MAX_LEN,
        });
    }
    let Some(block) = buf.get(V2_FIXED_LEN..total) else {
        return Ok(Parsed::Incomplete {
            need: total - buf.len(),
        });
    };
    if local {
        return Ok(Parsed::Done {
            consumed: total,
            source: None,
        });
    }
    let need = match family {
        0x11 => 12,
        0x21 => 36,
        0x31 => 216,
        _ => 0,
    };
    if block.len() < need {
        return Err(V2AddressTruncated {
            need,
            have: block.len(),
        });
    }
    let (addrs, tlvs) = block.split_at(need);
    check_tlvs(tlvs)?;
    let port = |at: usize| u16::from_be_bytes([addrs[at], addrs[at + 1]]);
    let source = match family {
        0x11 => {
            let ip = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
            Some(SocketAddr::new(IpAddr::V4(ip), port(8)))
        }
        0x21 => {
            let mut ip = [0; 16];
            ip.copy_from_slice(&addrs[..16]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port(32)))
        }
        _ => None, // UNSPEC or UNIX: no IP to report
    };
    Ok(Parsed::Done {
        consumed: total,
        source,
    })
}

/// TLVs are skipped, but their framing must be exact: type (1), length (2, big-endian), value.
fn check_tlvs(mut rest: &[u8]) -> Result<(), ProxyHeaderError> {
    while !rest.is_empty() {
        let [_, hi, lo, ..] = *rest else {
            return Err(ProxyHeaderError::V2BadTlv);
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        rest = rest.get(end..).ok_or(ProxyHeaderError::V2BadTlv)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ProxyHeaderError::*;
    use super::*;

    fn done(consumed: usize, source: Option<&str>) -> Result<Parsed, ProxyHeaderError> {
        Ok(Parsed::Done {
            consumed,
            source: source.map(|s| s.parse().unwrap()),
        })
    }

    /// v2 header: command, family byte, address block, TLVs.
    fn v2(ver_cmd: u8, family: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(family);
        h.extend_from_slice(
            &u16::try_from(addrs.len() + tlvs.len())
                .unwrap()
                .to_be_bytes(),
        );
        h.extend_from_slice(addrs);
        h.extend_from_slice(tlvs);
        h
    }

    fn v4_block() -> Vec<u8> {
        [[192, 0, 2, 1], [198, 51, 100, 2]]
            .concat()
            .into_iter()
            .chain([0x04, 0xd2, 0x01, 0xbb])
            .collect()
    }

    fn v6_block() -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        [&src.octets()[..], &dst.octets(), &[0xff, 0xff, 0x00, 0x50]].concat()
    }

    /// ALPN "h2", a NOOP of 0 bytes, and an AWS-style VPC endpoint ID.
    const TLVS: &[u8] = b"\x01\x00\x02h2\x04\x00\x00\xea\x00\x0a\x01vpce-1234";

    fn valid_cases() -> Vec<(Vec<u8>, Result<Parsed, ProxyHeaderError>)> {
        let unix_block = vec![0u8; 216];
        vec![
            (
                b"PROXY TCP4 192.0.2.1 198.51.100.2 1234 443\r\n".to_vec(),
                done(44, Some("192.0.2.1:1234")),
            ),
            (
                b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n".to_vec(),
                done(44, Some("0.0.0.0:0")),
            ),
            (
                b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 80\r\n".to_vec(),
                done(45, Some("[2001:db8::1]:65535")),
            ),
            (
                b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n".to_vec(),
                done(37, Some("[::ffff:192.0.2.1]:1")),
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), done(15, None)),
            (
                b"PROXY UNKNOWN ffff:f::1 ffff:f::2 65535 65535\r\n".to_vec(),
                done(47, None),
            ),
            (
                v2(0x21, 0x11, &v4_block(), &[]),
                done(28, Some("192.0.2.1:1234")),
            ),
            (
                v2(0x21, 0x11, &v4_block(), TLVS),
                done(28 + TLVS.len(), Some("192.0.2.1:1234")),
            ),
            (
                v2(0x21, 0x21, &v6_block(), TLVS),
                done(52 + TLVS.len(), Some("[2001:db8::1]:65535")),
            ),
            (v2(0x20, 0x00, &[], &[]), done(16, None)),
            (
                v2(0x20, 0x11, &v4_block(), TLVS),
                done(28 + TLVS.len(), None),
            ),
            (v2(0x20, 0xff, b"anything", &[]), done(24, None)),
            (v2(0x21, 0x00, &[], TLVS), done(16 + TLVS.len(), None)),
            (v2(0x21, 0x31, &unix_block, &[]), done(232, None)),
        ]
    }

    #[test]
    fn valid_headers_whole_and_with_data_after() {
        for (header, want) in valid_cases() {
            assert_eq!(parse(&header), want, "{header:?}");
            let mut more = header.clone();
            more.extend_from_slice(b"\x16\x03\x01 TLS or GET / HTTP/1.1\r\n");
            assert_eq!(parse(&more), want, "{header:?} + data");
        }
    }

    #[test]
    fn valid_headers_one_byte_at_a_time() {
        for (header, want) in valid_cases() {
            for n in 0..header.len() {
                match parse(&header[..n]) {
                    Ok(Parsed::Incomplete { need }) => assert!(
                        need >= 1 && n + need <= header.len(),
                        "{header:?}[..{n}] needs {need}"
                    ),
                    other => panic!("{header:?}[..{n}]: {other:?}"),
                }
            }
            assert_eq!(parse(&header), want);
        }
    }

    /// Reading exactly what the parser asks for ends at the header's last byte.
    #[test]
    fn reading_what_is_needed_ends_at_the_header_end() {
        for (header, want) in valid_cases() {
            let mut more = header.clone();
            more.extend_from_slice(b"\x16\x03\x01 the client's first bytes");
            let mut n = 0;
            while let Ok(Parsed::Incomplete { need }) = parse(&more[..n]) {
                n += need;
            }
            assert_eq!(n, header.len(), "{header:?}");
            assert_eq!(parse(&more[..n]), want);
        }
    }

    fn malformed_cases() -> Vec<(Vec<u8>, ProxyHeaderError)> {
        let v1 = |s: &str| s.as_bytes().to_vec();
        let mut long_unknown = b"PROXY UNKNOWN ".to_vec();
        long_unknown.resize(V1_MAX_LEN, b'a');
        // 107 bytes with a bare LF last: the CRLF could not fit from byte 106 on.
        let mut long_bare_lf = long_unknown.clone();
        long_bare_lf[V1_MAX_LEN - 1] = b'\n';
        vec![
            (v1("GET / HTTP/1.1\r\n"), NotProxyHeader),
            (v1("\x16\x03\x01"), NotProxyHeader),
            (v1("PROXZ TCP4"), NotProxyHeader),
            (v1("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), NotProxyHeader),
            (v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), V1BadLineEnd),
            (
                v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"),
                V1BadCharacter { byte: b'\r' },
            ),
            (
                v1("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n"),
                V1BadCharacter { byte: b'\t' },
            ),
            (
                v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n"),
                V1BadCharacter { byte: 0 },
            ),
            (
                v1("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
                V1BadCharacter { byte: b'%' },
            ),
            // A forbidden byte before a bare LF: the byte is seen first, whatever the read size.
            (
                v1("PROXY TCP4 1.2.3.4`5.6.7.8 1 2\n"),
                V1BadCharacter { byte: b'`' },
            ),
            (
                v1("PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\n"),
                V1BadCharacter { byte: b'\r' },
            ),
            (v1("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), V1UnknownProtocol),
            (v1("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), V1UnknownProtocol),
            (v1("PROXY\r\n"), NotProxyHeader),
            (v1("PROXY \r\n"), V1UnknownProtocol),
            (v1("PROXY UNKNOWNX\r\n"), V1UnknownProtocol),
            (v1("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), V1UnknownProtocol),
            (v1("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), V1BadFields),
            (v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), V1BadFields),
            (v1("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), V1BadFields),
            (v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), V1BadFields),
            (v1("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), V1BadAddress),
            (v1("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), V1BadAddress),
            (v1("PROXY TCP4 1.2.3.4 5.6.7 1 2\r\n"), V1BadAddress),
            (v1("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), V1BadAddress),
            (v1("PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n"), V1BadAddress),
            (v1("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), V1BadPort),
            (v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n"), V1BadPort),
            (v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 x\r\n"), V1BadPort),
            (v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 1234567\r\n"), V1BadPort),
            (long_unknown, V1TooLong),
            (long_bare_lf, V1TooLong),
            (
                v2(0x11, 0x11, &v4_block(), &[]),
                V2BadVersion { version: 1 },
            ),
            (
                v2(0x31, 0x11, &v4_block(), &[]),
                V2BadVersion { version: 3 },
            ),
            (
                v2(0x22, 0x11, &v4_block(), &[]),
                V2BadCommand { command: 2 },
            ),
            (
                v2(0x2f, 0x11, &v4_block(), &[]),
                V2BadCommand { command: 15 },
            ),
            (v2(0x21, 0x41, &v4_block(), &[]), V2BadFamily { byte: 0x41 }),
            (v2(0x21, 0x13, &v4_block(), &[]), V2BadFamily { byte: 0x13 }),
            (v2(0x21, 0x10, &v4_block(), &[]), V2BadFamily { byte: 0x10 }),
            (v2(0x21, 0x01, &[], &[]), V2BadFamily { byte: 0x01 }),
            (v2(0x21, 0x12, &v4_block(), &[]), V2NotStream),
            (v2(0x21, 0x22, &v6_block(), &[]), V2NotStream),
            (
                v2(0x21, 0x11, &v4_block()[..11], &[]),
                V2AddressTruncated { need: 12, have: 11 },
            ),
            (
                v2(0x21, 0x21, &v4_block(), &[]),
                V2AddressTruncated { need: 36, have: 12 },
            ),
            (
                v2(0x21, 0x31, &[0; 100], &[]),
                V2AddressTruncated {
                    need: 216,
                    have: 100,
                },
            ),
            (v2(0x21, 0x11, &v4_block(), b"\x01\x00"), V2BadTlv),
            (v2(0x21, 0x11, &v4_block(), b"\x01\x00\x03h2"), V2BadTlv),
            (v2(0x21, 0x11, &v4_block(), b"\x01\x00\x01h2"), V2BadTlv),
            (
                v2(0x21, 0x11, &v4_block(), &[0; 600]),
                V2TooLong {
                    len: 628,
                    max: V2_MAX_LEN,
                },
            ),
            (
                v2(0x20, 0x00, &[0; 521], &[]),
                V2TooLong {
                    len: 537,
                    max: V2_MAX_LEN,
                },
            ),
            (b"\r\n\r\n\0\r\nQUIT\r".to_vec(), NotProxyHeader),
            (b"\r\nGET".to_vec(), NotProxyHeader),
        ]
    }

    #[test]
    fn every_malformed_shape_is_refused() {
        for (input, want) in malformed_cases() {
            assert_eq!(
                parse(&input),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
            assert!(!want.to_string().is_empty());
        }
    }

    /// Fed one byte at a time, a malformed header is `Incomplete` and then fails with the
    /// same error for good: it never turns into `Done`.
    #[test]
    fn malformed_headers_one_byte_at_a_time() {
        for (input, want) in malformed_cases() {
            let mut failed = false;
            for n in 0..=input.len() {
                match parse(&input[..n]) {
                    Ok(Parsed::Incomplete { .. }) => {
                        assert!(!failed, "{input:?}[..{n}] recovered")
                    }
                    Err(e) => {
                        failed = true;
                        assert_eq!(e, want, "{input:?}[..{n}]");
                    }
                    Ok(done) => panic!("{input:?}[..{n}] parsed as {done:?}"),
                }
            }
            assert!(failed);
        }
    }

    #[test]
    fn signatures_are_told_from_tls_and_http() {
        assert!(starts_with_signature(b"PROXY TCP4"));
        assert!(starts_with_signature(&v2(0x21, 0x11, &v4_block(), &[])));
        for other in [
            &b"PROXY"[..],
            b"PUT / HTTP/1.1",
            b"\x16\x03\x01",
            b"\r\n\r\n\0\r\nQUI",
            b"",
        ] {
            assert!(!starts_with_signature(other), "{other:?}");
        }
    }

    #[test]
    fn fails_early_without_waiting_for_the_cap() {
        assert_eq!(parse(b"G"), Err(NotProxyHeader));
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4\x00"),
            Err(V1BadCharacter { byte: 0 })
        );
        let oversized = v2(0x21, 0x11, &v4_block(), &[0; 1000]);
        assert_eq!(
            parse(&oversized[..16]),
            Err(V2TooLong {
                len: 1028,
                max: V2_MAX_LEN
            })
        );
        assert_eq!(
            parse(&v2(0x31, 0, &[], &[])[..13]),
            Err(V2BadVersion { version: 3 })
        );
    }

    #[test]
    fn never_reads_past_the_cap() {
        // A 107-byte line, CRLF included, is the longest v1 header.
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX_LEN - 2, b'a');
        assert_eq!(parse(&line), Ok(Parsed::Incomplete { need: 2 }));
        line.push(b'\r');
        assert_eq!(parse(&line), Ok(Parsed::Incomplete { need: 1 }));
        line.push(b'\n');
        assert_eq!(parse(&line), done(V1_MAX_LEN, None));
        // One more byte before the CRLF can no longer fit: refused at byte 106.
        line.truncate(V1_MAX_LEN - 2);
        line.push(b'a');
        assert_eq!(parse(&line), Err(V1TooLong));
        // A v2 header exactly at the cap is fine; its tail is not looked at.
        let at_cap = v2(
            0x21,
            0x11,
            &v4_block(),
            &[&[0xee, 0x01, 0xf9][..], &[7; 505]].concat(),
        );
        assert_eq!(at_cap.len(), V2_MAX_LEN);
        let mut with_tail = at_cap.clone();
        with_tail.extend_from_slice(&[0xff; 4096]);
        assert_eq!(parse(&with_tail), done(V2_MAX_LEN, Some("192.0.2.1:1234")));
    }
}
