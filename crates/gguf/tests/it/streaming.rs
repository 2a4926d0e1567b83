//! `Builder::write_streaming`: tensors whose bytes are asked for only when due give the same
//! file as tensors added up front, and a plan or a buffer that does not fit is refused.

use std::io;

use gguf::{Builder, GgmlType, Gguf, TensorPlan, Value};

fn plans() -> Vec<(TensorPlan, Vec<u8>)> {
    vec![
        (
            TensorPlan {
                name: "a.weight".into(),
                ty: GgmlType::F32,
                shape: vec![3, 2],
            },
            (0..24).collect(),
        ),
        (
            TensorPlan {
                name: "b.weight".into(),
                ty: GgmlType::Q8_0,
                shape: vec![32, 1],
            },
            vec![7; 34],
        ),
    ]
}

#[test]
fn streamed_tensors_write_the_same_file_as_added_ones() {
    let mut up_front = Builder::new();
    up_front
        .set("general.architecture", Value::string("x"))
        .unwrap();
    let streamed = up_front.clone();
    for (p, data) in plans() {
        up_front.add_tensor(p.name, p.ty, &p.shape, data).unwrap();
    }
    let (plans, data): (Vec<_>, Vec<_>) = plans().into_iter().unzip();
    let mut asked = Vec::new();
    let mut out = Vec::new();
    let n = streamed
        .write_streaming(&plans, &mut out, |i| {
            asked.push(i);
            Ok(data[i].clone())
        })
        .unwrap();
    assert_eq!(asked, [0, 1]);
    assert_eq!(n as usize, out.len());
    assert!(out == up_front.to_bytes());
    let file = Gguf::parse(&out).unwrap();
    assert_eq!(file.tensor_data(file.tensor("b.weight").unwrap()), &[7; 34]);
}

#[test]
fn a_wrong_sized_buffer_or_a_bad_plan_is_refused() {
    let (plans, _): (Vec<_>, Vec<_>) = plans().into_iter().unzip();
    let e = Builder::new()
        .write_streaming(&plans, io::sink(), |_| Ok(vec![0; 5]))
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);

    let twice = [plans[0].clone(), plans[0].clone()];
    let e = Builder::new()
        .write_streaming(&twice, io::sink(), |_| Ok(vec![0; 24]))
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);

    let ragged = TensorPlan {
        name: "c.weight".into(),
        ty: GgmlType::Q8_0,
        shape: vec![31, 1],
    };
    let e = Builder::new()
        .write_streaming(&[ragged], io::sink(), |_| Ok(Vec::new()))
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}
