#!/bin/sh
# A stand-in deploy script: it checks its arguments and says what it would do.
# Usage: deploy.sh -- <commit sha> <branch>
set -eu

# hookflow passes `--` first, so a value starting with `-` can never be taken for an option.
if [ "${1-}" = "--" ]; then
    shift
fi
if [ "$#" -ne 2 ]; then
    echo "usage: deploy.sh -- <commit sha> <branch>" >&2
    exit 64
fi
sha=$1
branch=$2

# Check again here: the script must not trust its caller either.
case "$sha" in
    *[!0-9a-f]* | "")
        echo "refusing: '$sha' is not a commit id" >&2
        exit 65
        ;;
esac
if [ "${#sha}" -ne 40 ]; then
    echo "refusing: '$sha' is not a full commit id" >&2
    exit 65
fi

# A real script would run e.g.:
#   git fetch origin -- "$branch" && git checkout --detach "$sha" && make deploy
echo "would deploy $sha of ${DEPLOY_REPOSITORY:-?} ($branch), pushed by ${DEPLOY_PUSHER:-?}"
