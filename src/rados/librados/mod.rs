//! The real-Ceph backend (in progress).
