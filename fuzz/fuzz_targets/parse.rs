//! Fuzz target `parse`: any bytes go through `Gguf::parse`. When a file is accepted, every
//! metadata value is formatted and every tensor's data sliced, then the file is re-written: the
//! reader must accept the writer's output with the same content, and writing that again must
//! give the same bytes. A panic, an abort or a failed assertion is a finding.
#![no_main]

use gguf::{Builder, Gguf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = Gguf::parse(data) else {
        return;
    };
    for (key, value) in file.metadata() {
        let _ = format!("{key} = {value}");
    }
    for t in file.tensors() {
        assert_eq!(file.tensor_data(t).len() as u64, t.n_bytes());
        let _ = t.n_elements();
    }
    let bytes = Builder::from_gguf(&file).to_bytes();
    let again = match Gguf::parse(&bytes) {
        Ok(g) => g,
        Err(e) => panic!("the writer's output of an accepted file is rejected: {e}"),
    };
    assert_eq!(again.version, file.version);
    assert_eq!(again.metadata().len(), file.metadata().len());
    for ((k1, _), (k2, _)) in file.metadata().iter().zip(again.metadata()) {
        assert_eq!(k1, k2);
    }
    assert_eq!(again.tensors().len(), file.tensors().len());
    for (t1, t2) in file.tensors().iter().zip(again.tensors()) {
        assert_eq!((&t1.name, t1.ty, &t1.shape), (&t2.name, t2.ty, &t2.shape));
        assert_eq!(file.tensor_data(t1), again.tensor_data(t2));
    }
    assert_eq!(Builder::from_gguf(&again).to_bytes(), bytes);
});
