//! Structure-aware: the fuzzer describes a sequence of frames, this target
//! encodes them and checks the decoder's events and close code against a small
//! reference model written from the README "Frames" table, independently of
//! `src/frame/`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wsguard::frame::{Decoder, Event, OpCode};
use wsguard::frame::{FramePolicy, MaskKeyPolicy, Role};

#[derive(Arbitrary, Debug)]
enum Mask {
    None,
    Zero,
    /// The previous frame's key again (or a fixed one for the first frame).
    Repeat,
    Key(u32),
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Bytes(Vec<u8>),
    Text(String),
    Close {
        code: u16,
        reason: String,
    },
    /// Raw bytes that are often almost UTF-8.
    NearUtf8(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum LenForm {
    Minimal,
    Force16,
    Force64,
    /// 64-bit length with the top bit set.
    Msb,
}

#[derive(Arbitrary, Debug)]
struct FrameSpec {
    fin: bool,
    /// Low 3 bits: RSV1..3.
    rsv: u8,
    /// Low 4 bits.
    opcode: u8,
    mask: Mask,
    payload: Payload,
    len_form: LenForm,
}

#[derive(Arbitrary, Debug)]
struct Spec {
    client: bool,
    strict: bool,
    max_frame: Option<u8>,
    max_message: Option<u16>,
    max_fragments: Option<u8>,
    frames: Vec<FrameSpec>,
    /// The last frame declares this many more payload bytes than it carries,
    /// and the stream ends there.
    short_by: Option<u32>,
}

/// One encoded frame as the model sees it.
struct Wire {
    fin: bool,
    rsv: u8,
    opcode: u8,
    key: Option<[u8; 4]>,
    declared: u64,
    msb: bool,
    /// The length sits in a wider field than it needs.
    wide: bool,
    payload: Vec<u8>,
}

impl Wire {
    fn encode(&self, form: &LenForm, out: &mut Vec<u8>) {
        out.push(u8::from(self.fin) << 7 | (self.rsv & 7) << 4 | (self.opcode & 15));
        let m = if self.key.is_some() { 0x80 } else { 0 };
        let len = self.declared;
        match form {
            LenForm::Msb => {
                out.push(m | 127);
                out.extend_from_slice(&(len | 1 << 63).to_be_bytes());
            }
            LenForm::Force64 => {
                out.push(m | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
            LenForm::Force16 if len <= 0xFFFF => {
                out.push(m | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ if len < 126 => out.push(m | len as u8),
            _ if len <= 0xFFFF => {
                out.push(m | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(m | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        if let Some(k) = self.key {
            out.extend_from_slice(&k);
            out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        } else {
            out.extend_from_slice(&self.payload);
        }
    }
}

/// The rules as the README states them, applied frame by frame.
#[derive(Default)]
struct Model {
    client: bool,
    strict: bool,
    max_frame: Option<u64>,
    max_message: Option<u64>,
    max_fragments: Option<u64>,
    /// Text message in progress: Some(is_text) while a data message is open.
    open: Option<bool>,
    message_bytes: u64,
    fragments: u64,
    text: Vec<u8>,
    last_key: Option<[u8; 4]>,
    same_keys: u32,
}

/// What the model expects from one frame.
enum Outcome {
    Event(Event, Vec<u8>),
    /// Payload incomplete: no event yet.
    Pending,
    Close(u16),
}

fn valid_close_code(c: u16) -> bool {
    (1000..=1003).contains(&c) || (1007..=1014).contains(&c) || (3000..=4999).contains(&c)
}

fn could_become_utf8(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

impl Model {
    fn frame(&mut self, w: &Wire, complete: bool) -> Outcome {
        use Outcome::Close as C;
        if w.msb {
            return C(1002);
        }
        // "The minimal number of bytes MUST be used to encode the length."
        if w.wide {
            return C(1002);
        }
        let op = w.opcode & 15;
        if w.rsv & 7 != 0 || matches!(op, 3..=7 | 11..=15) {
            return C(1002);
        }
        if w.key.is_some() != self.client {
            return C(1002);
        }
        let control = op & 8 != 0;
        if control {
            if !w.fin || w.declared > 125 || (op == 8 && w.declared == 1) {
                return C(1002);
            }
        } else {
            match (op, self.open) {
                (0, None) => return C(1002),
                (0, Some(_)) => {}
                (_, Some(_)) => return C(1002),
                (_, None) => {
                    self.open = Some(op == 1);
                    self.message_bytes = 0;
                    self.fragments = 0;
                    self.text.clear();
                }
            }
        }
        if let (true, true, Some(k)) = (self.client, self.strict, w.key) {
            if k == [0; 4] {
                return C(1008);
            }
            if self.last_key == Some(k) {
                self.same_keys += 1;
            } else {
                self.last_key = Some(k);
                self.same_keys = 1;
            }
            if self.same_keys >= 3 {
                return C(1008);
            }
        }
        if self.max_frame.is_some_and(|m| w.declared > m) {
            return C(1009);
        }
        if !control {
            self.message_bytes = self.message_bytes.saturating_add(w.declared);
            self.fragments += 1;
            if self.max_message.is_some_and(|m| self.message_bytes > m)
                || self.max_fragments.is_some_and(|m| self.fragments > m)
            {
                return C(1009);
            }
        }
        // Payload rules.
        if !control && self.open == Some(true) {
            self.text.extend_from_slice(&w.payload);
            if !could_become_utf8(&self.text) {
                return C(1007);
            }
        }
        if !complete {
            return Outcome::Pending;
        }
        let p = w.payload.clone();
        match op {
            8 => {
                if p.len() >= 2 {
                    if !valid_close_code(u16::from_be_bytes([p[0], p[1]])) {
                        return C(1002);
                    }
                    if std::str::from_utf8(&p[2..]).is_err() {
                        return C(1007);
                    }
                }
                let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                Outcome::Event(Event::Close { code }, p)
            }
            9 => Outcome::Event(Event::Ping, p),
            10 => Outcome::Event(Event::Pong, p),
            _ => {
                if w.fin {
                    if self.open == Some(true) && std::str::from_utf8(&self.text).is_err() {
                        return C(1007);
                    }
                    self.open = None;
                }
                let opcode = OpCode::from_u8(op);
                Outcome::Event(Event::DataEnd { opcode, fin: w.fin }, Vec::new())
            }
        }
    }
}

fuzz_target!(|spec: Spec| {
    let mut model = Model {
        client: spec.client,
        strict: spec.strict,
        max_frame: spec.max_frame.map(u64::from),
        max_message: spec.max_message.map(u64::from),
        max_fragments: spec.max_fragments.map(u64::from),
        ..Model::default()
    };
    let policy = FramePolicy {
        max_frame_size: model.max_frame,
        max_message_size: model.max_message,
        max_fragments: model.max_fragments.map(|n| n as u32),
        mask_key_policy: if spec.strict {
            MaskKeyPolicy::Strict
        } else {
            MaskKeyPolicy::Rfc
        },
    };
    let role = if spec.client {
        Role::Client
    } else {
        Role::Server
    };

    // Encode, and run the model over the frames in order.
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    let mut expected_code = None;
    let mut prev_key = [0x11, 0x22, 0x33, 0x44];
    let count = spec.frames.len();
    for (i, f) in spec.frames.iter().enumerate() {
        let payload = match &f.payload {
            Payload::Bytes(b) | Payload::NearUtf8(b) => b.clone(),
            Payload::Text(s) => s.as_bytes().to_vec(),
            Payload::Close { code, reason } => {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(reason.as_bytes());
                p
            }
        };
        let payload = match &f.payload {
            // Mostly valid UTF-8 lead/continuation bytes, to hit the edges.
            Payload::NearUtf8(_) => payload.iter().map(|b| 0x80 | (b & 0x7F)).collect(),
            _ => payload,
        };
        let key = match f.mask {
            Mask::None => None,
            Mask::Zero => Some([0; 4]),
            Mask::Repeat => Some(prev_key),
            Mask::Key(k) => Some(k.to_be_bytes()),
        };
        if let Some(k) = key {
            prev_key = k;
        }
        let last = i + 1 == count;
        let short = if last { spec.short_by.unwrap_or(0) } else { 0 };
        let declared = payload.len() as u64 + u64::from(short);
        let wide = match f.len_form {
            LenForm::Force16 => declared <= 125,
            LenForm::Force64 => declared <= 0xFFFF,
            LenForm::Minimal | LenForm::Msb => false,
        };
        let wire = Wire {
            fin: f.fin,
            rsv: f.rsv,
            opcode: f.opcode,
            key,
            declared,
            msb: matches!(f.len_form, LenForm::Msb),
            wide,
            payload,
        };
        wire.encode(&f.len_form, &mut stream);
        match model.frame(&wire, short == 0) {
            Outcome::Event(e, p) => expected.push((e, p)),
            Outcome::Pending => {}
            Outcome::Close(code) => {
                expected_code = Some(code);
                break;
            }
        }
    }

    // Run the decoder over the whole stream.
    let mut dec = Decoder::new(role, policy);
    let mut got = Vec::new();
    let mut got_code = None;
    let mut at = 0;
    loop {
        match dec.feed(&stream[at..]) {
            Err(v) => {
                got_code = Some(v.close_code());
                break;
            }
            Ok((n, event)) => {
                at += n;
                match event {
                    Some(e @ Event::DataEnd { .. }) => got.push((e, Vec::new())),
                    Some(e) => got.push((e, dec.control_payload().to_vec())),
                    None if n == 0 => break,
                    None => {}
                }
            }
        }
    }
    assert_eq!(got, expected, "events");
    assert_eq!(got_code, expected_code, "close code");
});
