//! test-backend
