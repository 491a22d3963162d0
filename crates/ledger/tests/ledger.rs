//! State-machine tests through one data-driven helper: a script of signed transactions,
//! each with the outcome the user must see.

use ehrchain_crypto::Keypair;
use ehrchain_ledger::{
    AccountStatus, BlockContext, GenesisAccount, GenesisState, State, build_block, execute_block,
    genesis, verify_block, verify_chain,
};
use ehrchain_types::{AccountId, PublicKey, Role, SignedTransaction, Transaction, TxPayload};

const CHAIN: &str = "test-chain";

struct World {
    admin: Keypair,
    alice: Keypair,
    bob: Keypair,
    doc: Keypair,
    state: State,
    height: u64,
}

fn world() -> World {
    let admin = Keypair::from_seed(&[1; 32]);
    let alice = Keypair::from_seed(&[2; 32]);
    let bob = Keypair::from_seed(&[3; 32]);
    let doc = Keypair::from_seed(&[4; 32]);
    let g = GenesisState {
        chain_id: CHAIN.into(),
        timestamp_ms: 0,
        accounts: vec![
            GenesisAccount {
                public_key: admin.public_key(),
                role: Some(Role::Admin),
                balance: 0,
                encryption_key: None,
            },
            GenesisAccount {
                public_key: alice.public_key(),
                role: None,
                balance: 100,
                encryption_key: None,
            },
            GenesisAccount {
                public_key: bob.public_key(),
                role: None,
                balance: 100,
                encryption_key: None,
            },
        ],
    };
    World {
        admin,
        alice,
        bob,
        doc,
        state: State::genesis(&g),
        height: 0,
    }
}

fn nonce_of(state: &State, k: &Keypair) -> u64 {
    state.account(&k.account()).map_or(0, |a| a.nonce)
}

fn tx(state: &State, k: &Keypair, payload: TxPayload) -> SignedTransaction {
    k.sign_tx(Transaction {
        chain_id: CHAIN.into(),
        signer: k.public_key(),
        nonce: nonce_of(state, k),
        payload,
    })
}

/// Runs one transaction in its own block and checks the user-visible outcome: "applied",
/// "rejected: <reason substring>" or "invalid: <reason substring>" (the block is refused).
fn check(w: &mut World, stx: SignedTransaction, expected: &str) {
    w.height += 1;
    let ctx = BlockContext {
        height: w.height,
        timestamp_ms: w.height,
        proposer: PublicKey([0; 32]),
    };
    let before = w.state.clone();
    let got = match ehrchain_ledger::verify_signatures(std::slice::from_ref(&stx))
        .and_then(|()| execute_block(&mut w.state, std::slice::from_ref(&stx), &ctx))
    {
        Err(e) => {
            assert_eq!(w.state, before, "a refused block changed the state");
            format!("invalid: {e}")
        }
        Ok(out) => match &out.receipts[0].outcome {
            ehrchain_types::TxOutcome::Applied => "applied".to_string(),
            ehrchain_types::TxOutcome::Rejected { reason } => {
                let mut expect = before.clone();
                let a = expect.accounts.entry(stx.tx.sender()).or_default();
                a.nonce += 1;
                a.public_key.get_or_insert(stx.tx.signer);
                assert_eq!(
                    w.state, expect,
                    "a rejected transaction did more than consume its nonce"
                );
                format!("rejected: {reason}")
            }
        },
    };
    assert!(
        got == expected
            || (expected != "applied"
                && got.starts_with(expected.split(':').next().unwrap())
                && got.contains(expected.split_once(": ").map_or("", |x| x.1))),
        "expected {expected:?}, got {got:?}"
    );
}

fn acct(w: &World, k: &Keypair) -> ehrchain_ledger::Account {
    w.state.account(&k.account()).cloned().unwrap_or_default()
}

#[test]
fn registration_and_approval() {
    let mut w = world();
    let reg = |role, org: Option<&str>| TxPayload::Register {
        role,
        organisation: org.map(Into::into),
        licence: Some("GMC-1".into()),
    };
    let t = tx(&w.state, &w.alice, reg(Role::Patient, None));
    check(&mut w, t, "applied");
    assert_eq!(acct(&w, &w.alice).status, AccountStatus::Active);
    let t = tx(&w.state, &w.alice, reg(Role::Doctor, Some("X")));
    check(&mut w, t, "rejected: already registered as patient");
    let t = tx(&w.state, &w.doc, reg(Role::Doctor, None));
    check(&mut w, t, "rejected: must name an organisation");
    let t = tx(&w.state, &w.doc, reg(Role::Admin, None));
    check(&mut w, t, "rejected: cannot be registered");
    let t = tx(&w.state, &w.doc, reg(Role::Doctor, Some("St Mary")));
    check(&mut w, t, "applied");
    assert_eq!(acct(&w, &w.doc).status, AccountStatus::Pending);
    // Only the admin approves, and only pending accounts.
    let t = tx(
        &w.state,
        &w.bob,
        TxPayload::Approve {
            account: w.doc.account(),
        },
    );
    check(&mut w, t, "rejected: only the consortium admin");
    let t = tx(
        &w.state,
        &w.admin,
        TxPayload::Approve {
            account: w.alice.account(),
        },
    );
    check(&mut w, t, "rejected: is active, not pending");
    let t = tx(
        &w.state,
        &w.admin,
        TxPayload::Approve {
            account: w.bob.account(),
        },
    );
    check(&mut w, t, "rejected: is not registered");
    let t = tx(
        &w.state,
        &w.admin,
        TxPayload::Approve {
            account: w.doc.account(),
        },
    );
    check(&mut w, t, "applied");
    let d = acct(&w, &w.doc);
    assert_eq!(
        (d.status, d.approved_by, d.organisation.as_deref()),
        (
            AccountStatus::Active,
            Some(w.admin.account()),
            Some("St Mary")
        )
    );
    let long = "x".repeat(200);
    let t = tx(
        &w.state,
        &w.bob,
        TxPayload::Register {
            role: Role::Pharmacist,
            organisation: Some(long),
            licence: None,
        },
    );
    check(&mut w, t, "rejected: organisation is too long");
}

#[test]
fn transfers_replays_and_overdrafts() {
    let mut w = world();
    let to_bob = |amount| TxPayload::Transfer {
        to: AccountId::from_public_key(&Keypair::from_seed(&[3; 32]).public_key()),
        amount,
    };
    let first = tx(&w.state, &w.alice, to_bob(30));
    check(&mut w, first.clone(), "applied");
    assert_eq!(
        (acct(&w, &w.alice).balance, acct(&w, &w.bob).balance),
        (70, 130)
    );
    // The same signed transaction again: a replay, refused, nothing changes.
    check(
        &mut w,
        first,
        "invalid: replayed transaction: nonce 0 was already used",
    );
    // A nonce from the future.
    let mut gap = tx(&w.state, &w.alice, to_bob(1));
    gap.tx.nonce += 5;
    let gap = w.alice.sign_tx(gap.tx);
    check(&mut w, gap, "invalid: out-of-order transaction");
    let t = tx(&w.state, &w.alice, to_bob(71));
    check(
        &mut w,
        t,
        "rejected: insufficient balance: have 70, need 71",
    );
    let t = tx(&w.state, &w.alice, to_bob(0));
    check(&mut w, t, "rejected: amount must be greater than zero");
    let t = tx(
        &w.state,
        &w.alice,
        TxPayload::Transfer {
            to: w.alice.account(),
            amount: 1,
        },
    );
    check(
        &mut w,
        t,
        "rejected: cannot transfer to the sending account",
    );
    // A transfer to a new account creates it; supply is conserved.
    let t = tx(
        &w.state,
        &w.bob,
        TxPayload::Transfer {
            to: w.doc.account(),
            amount: 5,
        },
    );
    check(&mut w, t, "applied");
    assert_eq!(acct(&w, &w.doc).balance, 5);
    assert_eq!(w.state.total_supply(), 200);
    // A forged signature and another chain's transaction are invalid.
    let mut forged = tx(&w.state, &w.alice, to_bob(1));
    forged.signature.0[5] ^= 0x40;
    check(&mut w, forged, "invalid: transaction 0");
    let mut other = tx(&w.state, &w.alice, to_bob(1));
    other.tx.chain_id = "other".into();
    let other = w.alice.sign_tx(other.tx);
    check(&mut w, other, "invalid: transaction is for chain \"other\"");
}

#[test]
fn block_is_all_or_nothing_and_chain_verifies() {
    let w = world();
    let g = GenesisState {
        chain_id: CHAIN.into(),
        timestamp_ms: 0,
        accounts: vec![
            GenesisAccount {
                public_key: w.alice.public_key(),
                role: None,
                balance: 100,
                encryption_key: None,
            },
            GenesisAccount {
                public_key: w.bob.public_key(),
                role: None,
                balance: 100,
                encryption_key: None,
            },
        ],
    };
    let (g0, s0) = genesis(&g);
    let ctx = |h| BlockContext {
        height: h,
        timestamp_ms: h * 10,
        proposer: PublicKey([7; 32]),
    };
    // A valid transaction followed by a replay of it: the whole block is refused.
    let t0 = tx(
        &s0,
        &w.alice,
        TxPayload::Transfer {
            to: w.bob.account(),
            amount: 10,
        },
    );
    let mut s = s0.clone();
    let err = execute_block(&mut s, &[t0.clone(), t0.clone()], &ctx(1)).unwrap_err();
    assert!(err.to_string().contains("replayed"), "{err}");
    assert_eq!(s, s0, "nothing half-applied");
    // build → verify → chain verification, and a tampered copy fails at the right height.
    let (b1, s1, _) = build_block(
        &g0.header,
        &s0,
        vec![t0.clone(), t0.clone()],
        &ctx(1),
        1,
        100,
    );
    assert_eq!(b1.txs.len(), 1, "the duplicate is skipped when building");
    let (post, _) = verify_block(&g0.header, &s0, &b1).unwrap();
    assert_eq!(post.root(), s1.root());
    let t1 = tx(
        &s1,
        &w.bob,
        TxPayload::Transfer {
            to: w.alice.account(),
            amount: 500,
        },
    );
    let (b2, _, out2) = build_block(&b1.header, &s1, vec![t1], &ctx(2), 2, 100);
    assert!(matches!(
        out2.receipts[0].outcome,
        ehrchain_types::TxOutcome::Rejected { .. }
    ));
    let chain = vec![
        (0, g0.id(), g0.clone()),
        (1, b1.id(), b1.clone()),
        (2, b2.id(), b2.clone()),
    ];
    let ok = verify_chain(&g, chain.clone().into_iter().map(Ok)).unwrap();
    assert_eq!((ok.blocks, ok.transactions), (3, 2));
    let mut bad = chain.clone();
    bad[2].2.header.timestamp_ms = 5; // earlier than its parent
    let err = verify_chain(&g, bad.into_iter().map(|(h, _, b)| Ok((h, b.id(), b)))).unwrap_err();
    assert!(err.to_string().starts_with("block 2: timestamp"), "{err}");
    let mut bad = chain;
    bad[1].2.txs[0].signature.0[0] ^= 1;
    let err = verify_chain(&g, bad.into_iter().map(Ok)).unwrap_err();
    assert!(err.to_string().starts_with("block 1:"), "{err}");
}
