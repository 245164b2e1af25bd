//! The store conformance suite on the DynamoDB adapter, against the emulator. The same suite
//! runs on the in-memory adapter in shared's unit tests.

nodeai::store_conformance_tests!(nodeai_tests::fresh_store());

nodeai::secret_store_conformance_tests!(nodeai_tests::secret_store());
