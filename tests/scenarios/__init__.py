"""End-to-end scenarios: tests that walk several parts of the platform together (train → serve → billing →
invoices, the whole app's routers, the demo) or run real `modelshop serve` processes (a crash, two
replicas). A test of one module's behaviour belongs in the package that mirrors that module instead."""
