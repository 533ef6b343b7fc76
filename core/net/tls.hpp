// TLS set-up with OpenSSL 3: the gateway's server context (files or a
// generated self-signed certificate), the agent's verifying client context,
// and SPKI pins.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

typedef struct x509_st X509;

namespace muxgate::net {

struct self_signed {
    std::string cert_pem;
    std::string key_pem;
    std::string fingerprint;  // SHA-256 of the certificate, hex with colons
    std::string pin;          // "sha256//<base64 of SHA-256 of SubjectPublicKeyInfo>"
};

// A fresh P-256 key and a certificate valid for `names` (DNS names or IP
// literals; localhost, 127.0.0.1 and ::1 are always included) for `days`.
self_signed make_self_signed(const std::vector<std::string>& names, int days = 365);

struct cert_files {
    std::string cert;  // PEM chain
    std::string key;
};

struct server_tls_options {
    std::string cert_file;  // PEM chain; empty with self_signed set
    std::string key_file;
    const self_signed* generated = nullptr;
    // More certificates, chosen by the name a client asks for (SNI); the one
    // above serves everything else.
    std::vector<cert_files> extra;
};

// Whether a certificate name (possibly "*.example.com") covers `host`.
bool name_matches(std::string_view pattern, std::string_view host);

// TLS 1.2+ (1.3 preferred), AES-128-GCM first (fastest with AES-NI), idle
// connections release their buffers. Throws std::runtime_error with the file
// and OpenSSL's reason on failure (start-up only).
std::shared_ptr<boost::asio::ssl::context> make_server_context(const server_tls_options& o);

struct client_tls_options {
    std::string ca_file;     // empty: system trust store
    bool insecure = false;   // skip chain and host name checks
    std::string pin;         // optional "sha256//base64" SPKI pin, checked in addition
};

std::shared_ptr<boost::asio::ssl::context> make_client_context(const client_tls_options& o);

// "sha256//<base64>" for a certificate's public key.
std::string spki_pin(X509* cert);
// SHA-256 fingerprint "AA:BB:..." of a certificate.
std::string cert_fingerprint(X509* cert);

// Validates the text of a pin option; nullopt if fine, else what is wrong.
std::optional<std::string> check_pin_syntax(const std::string& pin);

// The last OpenSSL error as text (and clears the queue).
std::string openssl_error();

}  // namespace muxgate::net
