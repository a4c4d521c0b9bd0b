//! Raw serde structs (`deny_unknown_fields`) and their key lists ([`SCHEMA`], [`NESTED`]).
//!
//! Every leaf is a `Spanned<Leaf>` that accepts any TOML value, so a wrong type is found by
//! validation (which reports every problem) rather than by serde (which stops at the first).

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// Any TOML value, typed later by validation.
#[derive(Debug, Clone)]
pub(super) enum Leaf {
    Int(i64),
    Float,
    Bool(bool),
    Str(String),
    List(Vec<Spanned<Leaf>>),
    /// A table's entries, as the deserializer hands them over.
    Table(Vec<(String, Spanned<Leaf>)>),
    Date,
}

/// The key under which toml hands a date over as a one-entry map.
const DATE_FIELD: &str = "$__toml_private_datetime";

impl Leaf {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Leaf::Int(_) => "an integer",
            Leaf::Float => "a float",
            Leaf::Bool(_) => "a boolean",
            Leaf::Str(_) => "a string",
            Leaf::List(_) => "an array",
            Leaf::Table(_) | Leaf::Date => "a table or date",
        }
    }
}

impl<'de> Deserialize<'de> for Leaf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LeafVisitor)
    }
}

struct LeafVisitor;

impl<'de> Visitor<'de> for LeafVisitor {
    type Value = Leaf;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Leaf, E> {
        Ok(Leaf::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Leaf, E> {
        Ok(Leaf::Int(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Leaf, E> {
        i64::try_from(v)
            .map(Leaf::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Leaf, E> {
        Ok(Leaf::Float)
    }
    fn visit_str<E>(self, v: &str) -> Result<Leaf, E> {
        Ok(Leaf::Str(v.to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Leaf, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Leaf>>()? {
            items.push(item);
        }
        Ok(Leaf::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Leaf, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == DATE_FIELD {
                map.next_value::<IgnoredAny>()?;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(Leaf::Date);
            }
            entries.push((key, map.next_value::<Spanned<Leaf>>()?));
        }
        // A table may hand its keys over sorted; where each value is written gives the file order.
        entries.sort_by_key(|(_, value)| value.span().start);
        Ok(Leaf::Table(entries))
    }
}

pub(super) type Field = Option<Spanned<Leaf>>;

/// The keys of one section, as written in the file.
pub(super) trait Section {
    const KEYS: &'static [&'static str];
    /// Tables inside this section (`[limits.shared]`): key → that table's keys.
    const NESTED: &'static [(&'static str, &'static [&'static str])] = &[];
}

/// `[[route]]` is an array of tables, each with the keys of one route.
impl<T: Section> Section for Vec<Spanned<T>> {
    const KEYS: &'static [&'static str] = T::KEYS;
}

/// Declares a section's raw struct and its [`Section::KEYS`] from one list of fields, so the
/// keys the unknown-key pass knows are exactly the ones serde reads. `field as "key"` renames.
macro_rules! raw_section {
    ($(#[$doc:meta])* $name:ident {
        $($field:ident $(as $key:literal)?),* $(,)?
        $(; $($nested:ident: $nested_ty:ty),* $(,)?)?
    }) => {
        $(#[$doc])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $($(#[serde(rename = $key)])? pub $field: Field,)*
            $($(#[serde(default)] pub $nested: Option<Spanned<$nested_ty>>,)*)?
        }

        impl Section for $name {
            const KEYS: &'static [&'static str] = &[
                $(raw_section!(@key $field $($key)?),)*
                $($(stringify!($nested),)*)?
            ];
            const NESTED: &'static [(&'static str, &'static [&'static str])] =
                &[$($((stringify!($nested), <$nested_ty as Section>::KEYS),)*)?];
        }
    };
    (@key $field:ident $key:literal) => { $key };
    (@key $field:ident) => { stringify!($field) };
}

/// Declares [`RawConfig`] and [`SCHEMA`] (section name → known keys) from one list.
macro_rules! raw_config {
    ($($section:ident: $ty:ty),* $(,)?) => {
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct RawConfig {
            $(#[serde(default)] pub $section: $ty,)*
        }

        /// Known keys per section.
        pub(super) const SCHEMA: &[(&str, &[&str])] = &[$((stringify!($section), <$ty as Section>::KEYS)),*];

        /// Tables inside sections, per section (see [`Section::NESTED`]).
        pub(super) const NESTED: &[(&str, &[(&str, &[&str])])] = &[$((stringify!($section), <$ty as Section>::NESTED)),*];
    };
}

raw_config! {
    server: RawServer,
    origin: RawOrigin,
    frames: RawFrames,
    backend_frames: RawBackendFrames,
    rate: RawRate,
    backend_rate: RawRate,
    limits: RawLimits,
    deflate: RawDeflate,
    http: RawHttp,
    auth: RawAuths,
    route: Vec<Spanned<RawRoute>>,
    admin: RawAdmin,
    demo: RawDemo,
}

raw_section!(RawServer {
    listen,
    tls_cert,
    tls_key,
    handshake_timeout,
    max_request_head,
    backend_connect_timeout,
    close_timeout,
    shutdown_timeout,
    idle_timeout,
    ping_interval,
    pong_timeout,
});

raw_section!(RawOrigin {
    allow,
    allow_missing,
    mode
});

raw_section!(RawFrames {
    max_frame_size,
    max_message_size,
    max_fragments,
    mask_key_policy,
});

raw_section!(RawBackendFrames {
    max_frame_size,
    max_message_size,
    max_fragments,
});

raw_section!(
    /// `[rate]` and `[backend_rate]` (same keys, different defaults).
    RawRate {
        messages_per_second,
        burst,
        bytes_per_second,
        burst_bytes,
        control_per_second,
        control_burst,
        on_limit,
        heartbeats,
    }
);

raw_section!(RawLimits {
    max_connections,
    connections_per_ip,
    handshakes_per_ip,
    handshake_burst,
    max_tracked_ips,
    trusted_proxies,
    proxy_protocol,
    auth_failures_per_ip,
    auth_failure_burst;
    shared: RawShared,
});

raw_section!(
    /// `[limits.shared]`.
    RawShared {
        redis,
        password_file,
        ca_file,
        key_prefix,
        timeout,
        on_error,
        lease,
    }
);

raw_section!(RawDeflate {
    mode,
    context_takeover,
    max_window_bits,
    inspect_backend,
});

raw_section!(RawHttp {
    response_head_timeout,
    body_idle_timeout,
    max_duration,
    max_request_body,
    max_response_head,
    access_log,
    requests_per_ip,
    request_burst,
    held_requests_per_ip,
    max_held_requests,
});

raw_section!(RawAdmin { listen });

raw_section!(RawRoute {
    path,
    path_match as "match",
    backends,
    subprotocols,
    deflate,
    auth,
    keep_token,
    max_session,
    framework,
    http,
});

raw_section!(
    /// One `[auth.NAME]` section: the keys of both types; validation refuses those of the
    /// other type.
    RawAuth {
        kind as "type",
        grace,
        cookie,
        query,
        protocol_prefix,
        bearer,
        algorithms,
        public_keys,
        hmac_secret_file,
        jwks_url,
        jwks_ca_file,
        jwks_refresh,
        jwks_min_refresh,
        jwks_timeout,
        issuer,
        audience,
        leeway,
        require_exp,
        claim_headers,
        url,
        ca_file,
        timeout,
        copy_headers,
        on_error,
        cache_ttl,
        cache_size,
        expires_header,
    }
);

/// The `[auth.NAME]` sections in file order, each with its name as written.
#[derive(Debug, Default)]
pub(super) struct RawAuths(pub Vec<(Spanned<String>, Spanned<RawAuth>)>);

impl RawAuths {
    /// The section names as written, in file order: a route's `auth` is an index into them.
    pub(super) fn names(&self) -> Vec<&str> {
        self.0
            .iter()
            .map(|(name, _)| name.get_ref().as_str())
            .collect()
    }
}

impl Section for RawAuths {
    const KEYS: &'static [&'static str] = RawAuth::KEYS;
}

impl<'de> Deserialize<'de> for RawAuths {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(AuthsVisitor)
    }
}

struct AuthsVisitor;

impl<'de> Visitor<'de> for AuthsVisitor {
    type Value = RawAuths;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[auth.NAME] sections")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAuths, A::Error> {
        let mut sections: Vec<(Spanned<String>, Spanned<RawAuth>)> = Vec::new();
        while let Some(name) = map.next_key()? {
            sections.push((name, map.next_value()?));
        }
        // A table may hand its keys over sorted; where each name is written gives the file order.
        sections.sort_by_key(|(name, _)| name.span().start);
        Ok(RawAuths(sections))
    }
}

raw_section!(RawDemo {
    backend_listen,
    page_listen
});
