//! Arbitrary bytes as a config file: `sidekey::config::from_str` must return `Ok` or a
//! list of problems, never panic (the contract: "Never a panic or backtrace").
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match sidekey::config::from_str(text, Path::new("f.yaml"), Path::new("/tmp")) {
        Ok(cfg) => {
            // A config that validated must also build a route table and answer a
            // CONNECT plan without panicking.
            let table = sidekey::policy::RouteTable::new(&cfg.routes);
            let _ = table.connect_plan("example.com", cfg.default_action);
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "Err with no problems listed");
            for e in &errors {
                // Every problem names where and what.
                assert!(!e.message.is_empty(), "problem without a message: {e:?}");
            }
        }
    }
});
