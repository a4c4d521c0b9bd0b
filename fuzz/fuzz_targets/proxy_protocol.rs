//! The PROXY protocol v1/v2 parser on raw bytes: a header, perhaps followed by the
//! client's first bytes. Besides "no panic": read the way the server reads it (from
//! nothing, exactly `need` more bytes each time) it reaches the verdict of parsing all
//! bytes at once, never asks for more than the cap of its version, and accepts a header
//! exactly where its reads ended; and every header it accepts, ppp (a maintained parser)
//! accepts too, with the same length and client address, save two spec-backed differences.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use ppp::{v1, v2};
use wsguard::proxy_protocol::{self, Parsed, ProxyHeaderError, V1_MAX_LEN, V2_MAX_LEN};

type Verdict = Result<Parsed, ProxyHeaderError>;

/// The server's read loop: starts from nothing and reads exactly `need` more bytes until
/// the parser decides. Returns the verdict and the bytes read, or `None` when `data` ends
/// before the bytes the parser asked for.
fn read_as_the_server_does(data: &[u8]) -> Option<(Verdict, usize)> {
    let cap = cap(data);
    let mut read = 0;
    loop {
        match proxy_protocol::parse(&data[..read]) {
            Ok(Parsed::Incomplete { need }) => {
                assert!(need >= 1, "asks for nothing after {read} bytes");
                assert!(
                    read + need <= cap,
                    "asks for {} bytes, over the {cap}-byte cap",
                    read + need
                );
                if read + need > data.len() {
                    return None;
                }
                read += need;
            }
            verdict => return Some((verdict, read)),
        }
    }
}

/// The cap of the version `data` starts like: v1's for "P", else v2's, the larger (the
/// first read, 15 bytes, is under both).
fn cap(data: &[u8]) -> usize {
    if data.first() == Some(&b'P') {
        V1_MAX_LEN
    } else {
        V2_MAX_LEN
    }
}

/// The header length and client address ppp reads from `data`, the way wsguard reports
/// the address: none for v1 UNKNOWN, v2 LOCAL, and v2 families without an IP.
fn ppp_header(data: &[u8]) -> Result<(usize, Option<SocketAddr>), PppRefusal> {
    if data[0] == b'P' {
        let h = v1::Header::try_from(data).map_err(PppRefusal::V1)?;
        let source = match h.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            v1::Addresses::Unknown => None,
        };
        Ok((h.header.len(), source))
    } else {
        let h = v2::Header::try_from(data).map_err(PppRefusal::V2)?;
        let source = match (h.command, h.addresses) {
            (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            _ => None,
        };
        Ok((h.len(), source))
    }
}

enum PppRefusal {
    V1(v1::BinaryParseError),
    V2(v2::ParseError),
}

/// Where ppp refuses a header wsguard accepts and the spec sides with wsguard.
fn spec_sides_with_wsguard(header: &[u8], refusal: &PppRefusal) -> bool {
    match refusal {
        // ppp splits a v1 line into at most 7 fields, so after "UNKNOWN" and 6 or more
        // spaces the final "\n" is never a field of its own and ppp waits for a CRLF it
        // already has. Spec 2.1: for UNKNOWN "the receiver must ignore anything presented
        // before the CRLF is found".
        PppRefusal::V1(v1::BinaryParseError::Parse(v1::ParseError::MissingNewLine)) => {
            header.starts_with(b"PROXY UNKNOWN")
                && header.iter().filter(|&&b| b == b' ').count() >= 6
        }
        // ppp decodes the family of a LOCAL header too and refuses an undefined one or a
        // block shorter than its addresses. Spec 2.2: for LOCAL the receiver "must accept
        // this connection as valid and must use the real connection endpoints and discard
        // the protocol block including the family which is ignored".
        PppRefusal::V2(
            v2::ParseError::AddressFamily(_)
            | v2::ParseError::Protocol(_)
            | v2::ParseError::InvalidAddresses(..),
        ) => header[12] == 0x20,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = proxy_protocol::parse(data);
    let Some((verdict, read)) = read_as_the_server_does(data) else {
        // The parser wants bytes past the end of `data`: all of it holds no whole header.
        assert!(
            !matches!(whole, Ok(Parsed::Done { .. })),
            "{whole:?} from bytes the server would not have read"
        );
        return;
    };
    assert_eq!(verdict, whole, "read as the server does vs all at once");
    let Ok(Parsed::Done { consumed, source }) = verdict else {
        return;
    };
    assert_eq!(consumed, read, "the header ends where the reads ended");
    assert!(consumed <= cap(data), "{consumed}-byte header over the cap");

    let header = &data[..consumed];
    match ppp_header(data) {
        Ok(theirs) => assert_eq!(
            theirs,
            (consumed, source),
            "ppp reads {header:?} differently"
        ),
        Err(refusal) if spec_sides_with_wsguard(header, &refusal) => {}
        Err(PppRefusal::V1(e)) => panic!("ppp refuses v1 {header:?}: {e}"),
        Err(PppRefusal::V2(e)) => panic!("ppp refuses v2 {header:?}: {e}"),
    }
});
