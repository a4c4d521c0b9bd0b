use super::*;

const STRICT: Policy = Policy {
    context_takeover: false,
    max_window_bits: 15,
};
const TAKEOVER: Policy = Policy {
    context_takeover: true,
    max_window_bits: 15,
};

fn offers(policy: Policy, header: &str) -> Vec<Offer> {
    policy.offers([header.as_bytes()])
}

fn sent(policy: Policy, header: &str) -> String {
    offer_header(&offers(policy, header))
}

#[test]
fn browser_offer_is_tightened_for_the_backend() {
    assert_eq!(
        sent(STRICT, "permessage-deflate; client_max_window_bits"),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
    );
    assert_eq!(
        sent(TAKEOVER, "permessage-deflate; client_max_window_bits"),
        "permessage-deflate; client_max_window_bits"
    );
}

#[test]
fn window_cap_lowers_both_windows() {
    let p = Policy {
        context_takeover: true,
        max_window_bits: 10,
    };
    assert_eq!(
        sent(
            p,
            "permessage-deflate; client_max_window_bits=12; server_max_window_bits=9"
        ),
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10"
    );
    assert_eq!(
        sent(p, "permessage-deflate; client_max_window_bits"),
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits"
    );
    // No client_max_window_bits: no response could bound the client's window.
    assert!(offers(p, "permessage-deflate").is_empty());
}

#[test]
fn malformed_offers_and_other_extensions_are_declined() {
    for bad in [
        "permessage-deflate; foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"x\"",
        "x-webkit-deflate-frame",
        "permessage-deflate; a=\"unterminated",
    ] {
        assert!(offers(STRICT, bad).is_empty(), "{bad}");
    }
    // A bad offer does not spoil the good one after it.
    let list = "permessage-deflate; bogus, permessage-deflate; client_max_window_bits=9";
    let got = offers(TAKEOVER, list);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].client.client_max_window_bits, Some(Some(9)));
}

#[test]
fn offers_across_header_lines_are_read_and_capped() {
    let one = "permessage-deflate";
    let got = TAKEOVER.offers([one.as_bytes(), one.as_bytes()]);
    assert_eq!(got.len(), 2);
    let many = vec!["permessage-deflate"; 30].join(", ");
    assert_eq!(offers(TAKEOVER, &many).len(), MAX_OFFERS);
}

fn accept(policy: Policy, offer: &str, response: &str) -> Result<Option<Negotiated>, Rejected> {
    let sent = policy.negotiation([offer.as_bytes()]);
    super::accept(sent.as_ref(), [response.as_bytes()])
}

#[test]
fn default_policy_relays_no_context_takeover_both_ways() {
    let n = accept(
        STRICT,
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        n.response.to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert!(!n.client_context_takeover() && !n.server_context_takeover());
    // Full windows both ways: the response limits neither.
    assert_eq!(n.response.client_max_window_bits, None);
    assert_eq!(n.response.server_max_window_bits, None);
}

#[test]
fn client_no_context_takeover_is_added_to_the_relayed_response() {
    // The backend granted server_no_context_takeover but let the client keep context.
    let n = accept(
        STRICT,
        "permessage-deflate",
        "permessage-deflate; server_no_context_takeover",
    )
    .unwrap()
    .unwrap();
    assert!(n.response.client_no_context_takeover);
    assert!(!n.client_context_takeover());
}

#[test]
fn client_window_is_lowered_only_if_the_client_offered_the_parameter() {
    let p = Policy {
        context_takeover: true,
        max_window_bits: 11,
    };
    let n = accept(
        p,
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=11",
    )
    .unwrap()
    .unwrap();
    assert_eq!(n.response.client_max_window_bits, Some(Some(11)));
    assert_eq!(n.response.server_max_window_bits, Some(11));
    assert!(n.client_context_takeover() && n.server_context_takeover());
}

#[test]
fn backend_response_must_accept_an_offer_sent() {
    let offer = "permessage-deflate; client_max_window_bits=10";
    for (response, why) in [
        ("permessage-deflate", "server_no_context_takeover was asked"),
        (
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
            "client window above the hint",
        ),
        (
            "permessage-deflate; server_no_context_takeover; client_max_window_bits",
            "client_max_window_bits without a value in a response",
        ),
        (
            "permessage-deflate; server_no_context_takeover; mystery",
            "unknown parameter",
        ),
        (
            "permessage-deflate; server_no_context_takeover, permessage-deflate; server_no_context_takeover",
            "two extensions",
        ),
        ("x-other", "an extension not offered"),
    ] {
        assert!(accept(STRICT, offer, response).is_err(), "{why}: {response}");
    }
    assert_eq!(accept(STRICT, offer, "").unwrap(), None);
    assert!(STRICT.negotiation([b"x-other".as_slice()]).is_none());
}

#[test]
fn response_without_client_bits_offer_may_not_set_them() {
    let got = accept(
        TAKEOVER,
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits=9",
    );
    assert!(got.is_err());
    let got = accept(
        TAKEOVER,
        "permessage-deflate; server_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=11",
    );
    assert!(got.is_err(), "server window above the offer");
}

#[test]
fn any_extension_when_none_was_offered_is_rejected() {
    let got = super::accept(None, [b"permessage-deflate".as_slice()]);
    assert_eq!(got, Err("backend chose an extension that was not offered"));
}

#[test]
fn the_matching_offer_is_found_among_several() {
    let n = accept(
        TAKEOVER,
        "permessage-deflate; server_max_window_bits=9, permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=12",
    )
    .unwrap()
    .unwrap();
    assert_eq!(n.response.client_max_window_bits, Some(Some(12)));
    assert_eq!(n.response.server_max_window_bits, None);
    assert_eq!(
        n.response.to_string(),
        "permessage-deflate; client_max_window_bits=12"
    );
}
