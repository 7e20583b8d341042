"""The dashboard's pages, one router per audience: sign-in, owners, specialists, operators."""
