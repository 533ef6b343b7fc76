#include "net/tls.hpp"

#include <boost/asio/ssl.hpp>
#include <fmt/format.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace muxgate::net {

namespace ssl = boost::asio::ssl;

namespace {

template <class T, void (*F)(T*)>
struct deleter {
    void operator()(T* p) const noexcept { F(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, deleter<EVP_PKEY, EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, deleter<X509, X509_free>>;
using bio_ptr = std::unique_ptr<BIO, deleter<BIO, BIO_free_all>>;
using ext_ptr = std::unique_ptr<X509_EXTENSION, deleter<X509_EXTENSION, X509_EXTENSION_free>>;

std::string bio_string(BIO* b)
{
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    return std::string{data, static_cast<std::size_t>(n)};
}

std::string base64(const unsigned char* data, std::size_t n)
{
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    const int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data,
                                    static_cast<int>(n));
    out.resize(static_cast<std::size_t>(len));
    return out;
}

bool is_ip_literal(const std::string& s)
{
    boost::system::error_code ec;
    boost::asio::ip::make_address(s, ec);
    return !ec;
}

void add_ext(X509* cert, int nid, const std::string& value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    ext_ptr ext{X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str())};
    if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
        throw std::runtime_error("self-signed certificate: cannot add extension " + value + ": " +
                                 openssl_error());
}

// Prefer AES-128-GCM: with AES-NI it is the fastest AEAD and ample for a
// tunnel; ChaCha20 stays for peers without AES hardware.
constexpr const char* tls13_suites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

void common_setup(ssl::context& ctx)
{
    SSL_CTX* c = ctx.native_handle();
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_ciphersuites(c, tls13_suites);
    SSL_CTX_set_cipher_list(c, tls12_ciphers);
    // Idle connections give their read/write buffers back to the allocator:
    // this is what keeps a thousand idle agents cheap.
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
}

}  // namespace

std::string openssl_error()
{
    std::string out;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? "unknown OpenSSL error" : out;
}

self_signed make_self_signed(const std::vector<std::string>& names, int days)
{
    pkey_ptr key{EVP_EC_gen("P-256")};
    if (!key) throw std::runtime_error("cannot generate a P-256 key: " + openssl_error());
    x509_ptr cert{X509_new()};
    X509_set_version(cert.get(), 2);
    unsigned char serial[16];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 86400);
    X509_set_pubkey(cert.get(), key.get());
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("muxgate self-signed"), -1, -1, 0);
    X509_set_issuer_name(cert.get(), name);

    std::vector<std::string> all{"localhost", "127.0.0.1", "::1"};
    for (const auto& n : names)
        if (std::find(all.begin(), all.end(), n) == all.end()) all.push_back(n);
    std::string san;
    for (const auto& n : all) {
        if (!san.empty()) san += ",";
        san += (is_ip_literal(n) ? "IP:" : "DNS:") + n;
    }
    // CA:TRUE lets the certificate itself be the trust anchor an agent loads
    // with --ca; it signs nothing else.
    add_ext(cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    add_ext(cert.get(), NID_key_usage, "critical,digitalSignature,keyCertSign");
    add_ext(cert.get(), NID_ext_key_usage, "serverAuth");
    add_ext(cert.get(), NID_subject_alt_name, san);
    add_ext(cert.get(), NID_subject_key_identifier, "hash");
    if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0)
        throw std::runtime_error("cannot sign the self-signed certificate: " + openssl_error());

    self_signed out;
    bio_ptr cb{BIO_new(BIO_s_mem())};
    PEM_write_bio_X509(cb.get(), cert.get());
    out.cert_pem = bio_string(cb.get());
    bio_ptr kb{BIO_new(BIO_s_mem())};
    PEM_write_bio_PrivateKey(kb.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    out.key_pem = bio_string(kb.get());
    out.fingerprint = cert_fingerprint(cert.get());
    out.pin = spki_pin(cert.get());
    return out;
}

std::string spki_pin(X509* cert)
{
    EVP_PKEY* key = X509_get0_pubkey(cert);
    if (!key) return {};
    unsigned char* der = nullptr;
    const int len = i2d_PUBKEY(key, &der);
    if (len <= 0) return {};
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(der, static_cast<std::size_t>(len), digest);
    OPENSSL_free(der);
    return "sha256//" + base64(digest, sizeof digest);
}

std::string cert_fingerprint(X509* cert)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    X509_digest(cert, EVP_sha256(), md, &n);
    std::string out;
    for (unsigned i = 0; i < n; ++i) out += fmt::format("{}{:02X}", i ? ":" : "", md[i]);
    return out;
}

std::optional<std::string> check_pin_syntax(const std::string& pin)
{
    constexpr std::string_view prefix = "sha256//";
    if (pin.rfind(prefix, 0) != 0) return "a pin must start with sha256//";
    const std::string b64 = pin.substr(prefix.size());
    if (b64.size() != 44 || b64.back() != '=')
        return "a pin is sha256// followed by 44 base64 characters (32 bytes)";
    return std::nullopt;
}

bool name_matches(std::string_view pattern, std::string_view host)
{
    auto lower_eq = [](std::string_view a, std::string_view b) {
        return a.size() == b.size() &&
               std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
                   return std::tolower(static_cast<unsigned char>(x)) ==
                          std::tolower(static_cast<unsigned char>(y));
               });
    };
    if (pattern.substr(0, 2) == "*.") {
        // A wildcard covers exactly one left-most label.
        const auto dot = host.find('.');
        return dot != std::string_view::npos && dot > 0 && lower_eq(pattern.substr(1), host.substr(dot));
    }
    return lower_eq(pattern, host);
}

namespace {

void load_pair(ssl::context& ctx, const std::string& cert, const std::string& key)
{
    boost::system::error_code ec;
    ctx.use_certificate_chain_file(cert, ec);
    if (ec)
        throw std::runtime_error(fmt::format("certificate \"{}\": cannot load the chain: {}", cert,
                                             ec.message()));
    ctx.use_private_key_file(key, ssl::context::pem, ec);
    if (ec)
        throw std::runtime_error(fmt::format("key \"{}\": cannot load the private key: {}", key,
                                             ec.message()));
    if (SSL_CTX_check_private_key(ctx.native_handle()) != 1)
        throw std::runtime_error(fmt::format("key \"{}\" does not match certificate \"{}\"", key, cert));
}

// The DNS names a certificate is for (subjectAltName, else the CN).
std::vector<std::string> cert_names(X509* cert)
{
    std::vector<std::string> out;
    auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (sans) {
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
            const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
            if (g->type != GEN_DNS) continue;
            const auto* s = g->d.dNSName;
            out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                             static_cast<std::size_t>(ASN1_STRING_length(s)));
        }
        GENERAL_NAMES_free(sans);
    }
    if (out.empty()) {
        char cn[256] = {};
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0)
            out.emplace_back(cn);
    }
    return out;
}

// The certificates chosen by SNI, owned by the main context.
struct sni_table {
    struct entry {
        std::vector<std::string> names;
        std::shared_ptr<ssl::context> ctx;
    };
    std::vector<entry> entries;
};

int sni_index()
{
    static const int index = SSL_CTX_get_ex_new_index(
        0, nullptr, nullptr, nullptr,
        [](void*, void* p, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<sni_table*>(p); });
    return index;
}

int on_servername(SSL* ssl, int*, void* arg)
{
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name) return SSL_TLSEXT_ERR_OK;  // no SNI: the main certificate
    const auto* table = static_cast<const sni_table*>(arg);
    // Exact names win over wildcards.
    for (int pass = 0; pass < 2; ++pass)
        for (const auto& e : table->entries)
            for (const auto& n : e.names) {
                const bool wild = n.rfind("*.", 0) == 0;
                if (wild == (pass == 1) && name_matches(n, name)) {
                    SSL_set_SSL_CTX(ssl, e.ctx->native_handle());
                    return SSL_TLSEXT_ERR_OK;
                }
            }
    return SSL_TLSEXT_ERR_OK;
}

}  // namespace

std::shared_ptr<ssl::context> make_server_context(const server_tls_options& o)
{
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    common_setup(*ctx);
    SSL_CTX_set_options(ctx->native_handle(), SSL_OP_CIPHER_SERVER_PREFERENCE);
    boost::system::error_code ec;
    if (o.generated) {
        ctx->use_certificate_chain(boost::asio::buffer(o.generated->cert_pem), ec);
        if (!ec)
            ctx->use_private_key(boost::asio::buffer(o.generated->key_pem), ssl::context::pem, ec);
        if (ec) throw std::runtime_error("self-signed certificate: " + ec.message());
    } else {
        load_pair(*ctx, o.cert_file, o.key_file);
    }
    if (!o.extra.empty()) {
        auto table = std::make_unique<sni_table>();
        for (const auto& f : o.extra) {
            auto c = std::make_shared<ssl::context>(ssl::context::tls_server);
            common_setup(*c);
            SSL_CTX_set_options(c->native_handle(), SSL_OP_CIPHER_SERVER_PREFERENCE);
            load_pair(*c, f.cert, f.key);
            auto names = cert_names(SSL_CTX_get0_certificate(c->native_handle()));
            if (names.empty())
                throw std::runtime_error(fmt::format("certificate \"{}\" names no host", f.cert));
            table->entries.push_back({std::move(names), std::move(c)});
        }
        SSL_CTX_set_tlsext_servername_callback(ctx->native_handle(), &on_servername);
        SSL_CTX_set_tlsext_servername_arg(ctx->native_handle(), table.get());
        SSL_CTX_set_ex_data(ctx->native_handle(), sni_index(), table.release());
    }
    return ctx;
}

std::shared_ptr<ssl::context> make_client_context(const client_tls_options& o)
{
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    common_setup(*ctx);
    if (o.insecure) {
        ctx->set_verify_mode(ssl::verify_none);
        return ctx;
    }
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    boost::system::error_code ec;
    if (!o.ca_file.empty()) {
        ctx->load_verify_file(o.ca_file, ec);
        if (ec)
            throw std::runtime_error(
                fmt::format("CA file \"{}\": cannot load: {}", o.ca_file, ec.message()));
    } else {
        ctx->set_default_verify_paths(ec);
        if (ec) throw std::runtime_error("cannot load the system trust store: " + ec.message());
    }
    return ctx;
}

}  // namespace muxgate::net
