#include "common.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace muxgate::ssh {

ssh_key load_or_create_host_key(const std::string& path, bool& created)
{
    created = false;
    ssh_key key = nullptr;
    struct stat st{};
    if (::stat(path.c_str(), &st) == 0) {
        if (ssh_pki_import_privkey_file(path.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK)
            throw std::runtime_error("host key \"" + path +
                                     "\": not an unencrypted OpenSSH private key");
        return key;
    }
    if (errno != ENOENT)
        throw std::runtime_error("host key \"" + path + "\": " + std::strerror(errno));
    if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK)
        throw std::runtime_error("cannot generate an ed25519 host key");
    // Create the file 0600 first, so the key is never readable by others.
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        ssh_key_free(key);
        throw std::runtime_error("host key \"" + path + "\": cannot create: " +
                                 std::strerror(errno));
    }
    ::close(fd);
    if (ssh_pki_export_privkey_file(key, nullptr, nullptr, nullptr, path.c_str()) != SSH_OK) {
        ssh_key_free(key);
        ::unlink(path.c_str());
        throw std::runtime_error("host key \"" + path + "\": cannot write it");
    }
    ::chmod(path.c_str(), 0600);
    created = true;
    return key;
}

std::string fingerprint(ssh_key key)
{
    unsigned char* hash = nullptr;
    size_t len = 0;
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &len) != SSH_OK)
        return "SHA256:?";
    char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, len);
    ssh_clean_pubkey_hash(&hash);
    std::string out = text ? text : "SHA256:?";
    ssh_string_free_char(text);
    return out;
}

std::string seconds_text(std::uint64_t us)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3fs", static_cast<double>(us) / 1e6);
    return buf;
}

}  // namespace muxgate::ssh
