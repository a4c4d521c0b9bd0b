//! Config parsing from arbitrary text. Besides "no panic" (and no hang on deep
//! TOML): a config that parses prints effective settings that parse again to
//! the same settings, which print the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsguard::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_str(src, "fuzz.toml") else {
        return;
    };
    let printed = config.to_effective_toml();
    let again = Config::from_str(&printed, "fuzz.toml")
        .unwrap_or_else(|e| panic!("effective settings do not parse: {e}\n{printed}"));
    assert_eq!(again, config, "{printed}");
    assert_eq!(again.to_effective_toml(), printed);
});
