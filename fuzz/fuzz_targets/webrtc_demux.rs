#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| trunkgate::fuzzing::webrtc_demux(data));
