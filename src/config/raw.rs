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
    Table,
}

impl Leaf {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Leaf::Int(_) => "an integer",
            Leaf::Float => "a float",
            Leaf::Bool(_) => "a boolean",
            Leaf::Str(_) => "a string",
            Leaf::List(_) => "an array",
            Leaf::Table => "a table or date",
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
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Leaf::Table)
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
    }
);

raw_section!(RawLimits {
    max_connections,
    connections_per_ip,
    handshakes_per_ip,
    handshake_burst,
    max_tracked_ips,
    trusted_proxies,
    proxy_protocol;
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

raw_section!(RawAdmin { listen });

raw_section!(RawRoute {
    path,
    path_match as "match",
    backends,
    subprotocols,
    deflate,
});

raw_section!(RawDemo {
    backend_listen,
    page_listen
});
