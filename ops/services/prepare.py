"""Creates the bucket or container a started test service needs; safe to run again.

Usage: prepare.py s3 ENDPOINT BUCKET
       prepare.py azure ENDPOINT ACCOUNT KEY CONTAINER
       prepare.py gcs ENDPOINT BUCKET
"""

import json
import sys
import urllib.error
import urllib.request


def s3(endpoint: str, bucket: str) -> None:
    import boto3  # installed with moto

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="stowage-test",
        aws_secret_access_key="stowage-test-secret",
    )
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


def azure(endpoint: str, account: str, key: str, container: str) -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(
        account_url=endpoint, credential={"account_name": account, "account_key": key}
    )
    try:
        service.create_container(container)
    except ResourceExistsError:
        pass


def gcs(endpoint: str, bucket: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/storage/v1/b",
        data=json.dumps({"name": bucket}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except urllib.error.HTTPError as err:
        if err.code != 409:  # 409: the bucket exists already
            raise


def main() -> None:
    kinds = {"s3": (s3, 2), "azure": (azure, 4), "gcs": (gcs, 2)}
    if len(sys.argv) < 2 or sys.argv[1] not in kinds:
        sys.exit(__doc__)
    function, arity = kinds[sys.argv[1]]
    args = sys.argv[2:]
    if len(args) != arity:
        sys.exit(f"prepare.py {sys.argv[1]}: expected {arity} arguments, got {len(args)}\n{__doc__}")
    function(*args)


if __name__ == "__main__":
    main()
