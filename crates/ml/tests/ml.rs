//! The model is deterministic from its seed, the split leaks nothing, and bad input gets a
//! clear error.

use ehrchain_ml::{DEFAULT_SEED, Model, PredictError, data, evaluate};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn same_seed_same_model_hash_other_seed_other_hash() {
    let a = Model::train(DEFAULT_SEED).unwrap();
    let b = Model::train(DEFAULT_SEED).unwrap();
    assert_eq!(a.to_bytes(), b.to_bytes());
    assert_eq!(a.version(), b.version());
    assert_eq!(a.version(), Model::builtin().version());
    let c = Model::train(DEFAULT_SEED + 1).unwrap();
    assert_ne!(a.version(), c.version());
    // The file round-trips to the same model and version.
    let back = Model::from_bytes(&a.to_bytes()).unwrap();
    assert!(back == a, "the model file does not round-trip");
    assert_eq!(back.version(), a.version());
}

#[test]
fn the_split_shares_no_symptom_vector() {
    let k = data::Knowledge::embedded();
    assert_eq!(k.diseases.len(), 158);
    let cfg = data::SynthConfig::default();
    let samples = data::synthesise(&k, &cfg, 7);
    assert_eq!(
        samples,
        data::synthesise(&k, &cfg, 7),
        "generation is seeded"
    );
    let (train, test, stats) = data::split(&samples, cfg.test_share, 7);
    assert_eq!(stats.shared_vectors, 0);
    assert!(
        stats.exact_duplicates > 0,
        "the generator does produce duplicates"
    );
    let seen: std::collections::BTreeSet<_> = train.iter().map(|s| &s.symptoms).collect();
    assert!(test.iter().all(|s| !seen.contains(&s.symptoms)));
    assert_eq!(
        stats.train + stats.test + stats.exact_duplicates,
        stats.generated
    );
    assert!(stats.test > 500, "{stats:?}");
}

#[test]
fn predictions_rank_the_disease_and_carry_provenance() {
    let m = Model::builtin();
    let k = data::Knowledge::embedded();
    let acne = k
        .diseases
        .iter()
        .find(|d| d.name == "Acne Vulgaris")
        .unwrap();
    let p = m.predict(&acne.symptoms, 3).unwrap();
    assert_eq!(p.ranked[0].disease, "Acne Vulgaris");
    assert_eq!(p.ranked[0].icd10, "L70.0");
    assert!(
        p.ranked[0]
            .medications
            .contains(&"Benzoyl Peroxide".to_string())
    );
    assert_eq!(p.ranked.len(), 3);
    assert!(
        p.ranked
            .windows(2)
            .all(|w| w[0].probability >= w[1].probability)
    );
    assert!(p.ranked.iter().map(|r| r.probability).sum::<f64>() <= 1.0 + 1e-9);
    assert_eq!(p.model.version, m.version());
    assert!(p.model.top1_accuracy > 0.0 && p.model.top1_accuracy < 1.0);
    // Labels and odd spacing work as well as ids.
    let q = m
        .predict(&s(&["Blackheads", " whiteheads ", "PIMPLES"]), 1)
        .unwrap();
    assert_eq!(q.ranked[0].disease, "Acne Vulgaris");
    assert_eq!(q.symptoms, s(&["blackheads", "whiteheads", "pimples"]));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let m = Model::builtin();
    match m.predict(&s(&["fever", "feaver"]), 5) {
        Err(PredictError::Unknown { given, close }) => {
            assert_eq!(given, "feaver");
            assert!(close.contains(&"fever".to_string()), "{close:?}");
        }
        other => panic!("{other:?}"),
    }
    let e = m.predict(&s(&["feaver"]), 5).unwrap_err().to_string();
    assert!(e.contains("did you mean: fever"), "{e}");
    assert_eq!(m.predict(&s(&[" ", ""]), 5), Err(PredictError::Empty));
    assert_eq!(m.predict(&s(&["fever"]), 0), Err(PredictError::BadTop(0)));
    assert_eq!(m.predict(&s(&["fever"]), 21), Err(PredictError::BadTop(21)));
    assert!(matches!(
        Model::from_bytes(b"{not json"),
        Err(PredictError::BadModel(_))
    ));
    let mut bytes = m.to_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    bytes = text
        .replacen("\"format\":1", "\"format\":9", 1)
        .into_bytes();
    assert!(
        Model::from_bytes(&bytes)
            .unwrap_err()
            .to_string()
            .contains("format 9")
    );
}

#[test]
fn evaluation_is_deterministic_and_honest() {
    let a = evaluate(DEFAULT_SEED).unwrap();
    assert!(
        a.nb_readout_agrees,
        "read-out NB disagrees with smartcore's predict"
    );
    assert_eq!(a.split.shared_vectors, 0);
    for m in [&a.naive_bayes, &a.svm, &a.random_forest] {
        // Identical symptom lists cap what any model can reach; a figure near 100 % would
        // mean the split leaks.
        assert!(m.top1 > 0.3 && m.top1 < 0.97, "{m:?}");
    }
    assert_eq!(a.identical_profiles.len(), 4);
    let md = a.markdown("ehrchain ml evaluate --out docs/ml.md");
    assert!(md.contains("synthetic") && md.contains(&a.model_version));
    // The committed report is what this code produces (regenerate it with the command in
    // its first lines when the data, the models or the report change).
    let committed =
        std::fs::read_to_string(std::path::PathBuf::from(manifest_dir()).join("../../docs/ml.md"))
            .unwrap();
    assert!(
        committed == md,
        "docs/ml.md is stale: run `ehrchain ml evaluate --out docs/ml.md`"
    );
}

/// This crate's directory, as cargo gives it to the running test (a build cache shared with
/// another checkout can hold a binary compiled there, whose compile-time path is gone).
fn manifest_dir() -> std::ffi::OsString {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}
