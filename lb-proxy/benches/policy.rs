//! What a route's policies cost per request, measured on the calls the policies make: a local
//! rate-limit decision (lb-core's keyed GCRA store), a JWT check with each algorithm (header
//! parse, the pinned key, signature and claims, as `policy/auth/jwt.rs` calls
//! `jsonwebtoken`), the salted digest of a Basic credential already verified (the cache hit),
//! and a bcrypt verification (what every request would pay without the cache).
//!
//! Run: `cargo bench -p lb-proxy --bench policy -- --warm-up-time 1 --measurement-time 3`.
//! Wall-clock figures: read them on a quiet machine.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lb_core::ratelimit::{Gcra, KeyedLimiter};
use sha2::Digest as _;

fn fixture(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/");
    std::fs::read(format!("{path}{name}")).expect("fixture")
}

fn bench(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)] // the bench's own clock origin
    let epoch = Instant::now();
    let limiter = KeyedLimiter::new(
        Gcra::try_new(1_000_000_000, Duration::from_secs(1), 1_000).unwrap(),
        1_000_000,
        epoch,
    );
    let mut client = 0u128;
    c.bench_function("rate_limit_local_decision", |b| {
        b.iter(|| {
            client = (client + 1) % 10_000;
            black_box(limiter.check(black_box(client), epoch + Duration::from_secs(1)))
        })
    });

    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({"sub": "bench", "exp": exp});
    type Claims = serde_json::Map<String, serde_json::Value>;
    let cases = [
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap(),
            DecodingKey::from_rsa_pem(&fixture("rsa-public.pem")).unwrap(),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&fixture("ec-private.pem")).unwrap(),
            DecodingKey::from_ec_pem(&fixture("ec-public.pem")).unwrap(),
        ),
        (
            Algorithm::HS256,
            EncodingKey::from_secret(b"secret"),
            DecodingKey::from_secret(b"secret"),
        ),
    ];
    for (alg, encoding, decoding) in cases {
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &encoding).unwrap();
        c.bench_function(&format!("jwt_{alg:?}_check"), |b| {
            b.iter(|| {
                let header = jsonwebtoken::decode_header(black_box(&token)).unwrap();
                let mut validation = Validation::new(header.alg);
                validation.set_required_spec_claims(&["exp"]);
                validation.validate_aud = false;
                black_box(jsonwebtoken::decode::<Claims>(&token, &decoding, &validation).unwrap())
            })
        });
    }

    let salt = [7u8; 32];
    c.bench_function("basic_cached_credential_digest", |b| {
        b.iter(|| {
            let digest: [u8; 32] = sha2::Sha256::new()
                .chain_update(salt)
                .chain_update(black_box(b"alice"))
                .chain_update([0])
                .chain_update(black_box(b"correct horse battery staple"))
                .finalize()
                .into();
            black_box(digest)
        })
    });
    let hash = bcrypt::hash("hunter2", 5).unwrap();
    c.bench_function("basic_bcrypt_cost5_verify", |b| {
        b.iter(|| black_box(bcrypt::verify(black_box("hunter2"), &hash).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
