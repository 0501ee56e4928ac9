"""Trust: signatures (minisign), signer certificates, decryption (age, legacy openssl), replay."""
