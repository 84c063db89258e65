# S3 downloads without the AWS CLI or AWS Tools for PowerShell (cdk-agent-fleet). Functions only:
# renderWindowsScript puts this file after the settings header of install-agent.ps1.
#
# A GET signed here with AWS Signature Version 4 (.NET's SHA256 and HMACSHA256), sent through
# $AgentProxyUrl when it is set. Credentials, in the order the AWS SDKs use them under the SSM Agent:
#   1. Default Host Management: the agent writes the role's credentials to a file only SYSTEM and
#      Administrators can read, and points runPowerShellScript at it with AWS_SHARED_CREDENTIALS_FILE
#      (and AWS_PROFILE when set);
#   2. the instance profile, from the instance metadata service (Get-ImdsPath of install-agent.ps1).
# Secrets stay in this process's memory: no child process is started.

function Get-Sha256Hex([byte[]] $Bytes) {
  $sha = [System.Security.Cryptography.SHA256]::Create()
  try { return -join ($sha.ComputeHash($Bytes) | ForEach-Object { $_.ToString('x2') }) } finally { $sha.Dispose() }
}

function Get-HmacSha256([byte[]] $Key, [string] $Message) {
  $hmac = [System.Security.Cryptography.HMACSHA256]::new($Key)
  try { return $hmac.ComputeHash([System.Text.Encoding]::UTF8.GetBytes($Message)) } finally { $hmac.Dispose() }
}

# The value of a key in one profile of a shared credentials file (INI, as the SSM Agent writes it).
function Get-IniValue([string] $File, [string] $ProfileName, [string] $Name) {
  $section = ''
  foreach ($line in [System.IO.File]::ReadAllLines($File)) {
    if ($line -match '^\s*\[\s*(?:profile\s+)?([^\]]*?)\s*\]') { $section = $Matches[1]; continue }
    if ($section -ceq $ProfileName -and $line -match '^\s*([A-Za-z0-9_]+)\s*[=:]\s*(.*?)\s*$' -and $Matches[1] -ceq $Name) {
      $value = $Matches[2]
      if ($value -match '^`(.*)`$' -or $value -match '^"(.*)"$') { $value = $Matches[1] }
      return $value
    }
  }
  return ''
}

# Default Host Management credentials the SSM Agent shared with this run, or $null.
function Get-SharedCredentials {
  $file = $env:AWS_SHARED_CREDENTIALS_FILE
  if (-not $file) { return $null }
  $profileName = if ($env:AWS_PROFILE) { $env:AWS_PROFILE } else { 'default' }
  if (-not (Test-Path -LiteralPath $file -PathType Leaf)) { Write-Log "AWS_SHARED_CREDENTIALS_FILE names $file, which does not exist"; return $null }
  $credentials = @{
    KeyId = Get-IniValue $file $profileName 'aws_access_key_id'
    Secret = Get-IniValue $file $profileName 'aws_secret_access_key'
    Token = Get-IniValue $file $profileName 'aws_session_token'
    Source = "the Default Host Management credentials the SSM Agent shared ($file, profile $profileName)"
  }
  if (-not $credentials.KeyId -or -not $credentials.Secret) { Write-Log "$file has no access key in profile $profileName"; return $null }
  return $credentials
}

# The instance profile's credentials from the instance metadata service, or $null.
function Get-InstanceProfileCredentials {
  if ($Script:ImdsVersion -eq 'none') { return $null }
  $list = Get-ImdsPath '/latest/meta-data/iam/security-credentials/'
  if ($list.Status -ne 200) {
    if ($list.Status -eq 404) { Write-Log 'the instance has no instance profile' } else { Write-Log "the metadata service answered $($list.Status) for the instance profile" }
    return $null
  }
  $role = ($list.Body -split "`n")[0].Trim()
  if ($role -notmatch '^[A-Za-z0-9+=,.@_-]+$') { Write-Log 'the metadata service named no usable instance profile role'; return $null }
  $response = Get-ImdsPath "/latest/meta-data/iam/security-credentials/$role"
  if ($response.Status -ne 200) { Write-Log "the metadata service answered $($response.Status) for the credentials of role $role"; return $null }
  $document = $response.Body | ConvertFrom-Json
  $fields = $document.PSObject.Properties
  if (-not $fields['AccessKeyId'] -or -not $fields['SecretAccessKey']) { Write-Log "the metadata service gave no access key for role $role"; return $null }
  return @{
    KeyId = [string] $document.AccessKeyId; Secret = [string] $document.SecretAccessKey
    Token = if ($fields['Token']) { [string] $document.Token } else { '' }
    Source = "the instance profile role $role"
  }
}

# Downloads s3://bucket/key into $File with a SigV4-signed GET; throws with the reason on failure.
function Get-S3Object([string] $Source, [string] $Region, [string] $File) {
  if ($Source -notmatch '^s3://([^/]+)/(.+)$') { throw "not an S3 object URL: $Source" }
  $bucket = $Matches[1]
  $key = $Matches[2]
  if ($Region -notmatch '^[a-z]{2}(-[a-z]+)+-[0-9]+$') { throw "no usable region for s3://$bucket ('$Region')" }
  $credentials = Get-SharedCredentials
  if (-not $credentials) { $credentials = Get-InstanceProfileCredentials }
  if (-not $credentials) {
    throw "no AWS credentials to read s3://$bucket/${key}: the SSM Agent shared no Default Host Management credentials (AWS_SHARED_CREDENTIALS_FILE) and the instance has no usable instance profile"
  }
  Write-Log "downloading s3://$bucket/$key, signed with $($credentials.Source)"

  # Virtual-hosted style; path style for bucket names with dots (their TLS name would not match).
  $path = '/' + (($key -split '/' | ForEach-Object { [Uri]::EscapeDataString($_) }) -join '/')
  $hostName = "s3.$Region.amazonaws.com"
  if ($Region.StartsWith('cn-')) { $hostName += '.cn' }
  if ($bucket.Contains('.')) { $path = "/$bucket$path" } else { $hostName = "$bucket.$hostName" }

  $now = [DateTime]::UtcNow
  $amzDate = $now.ToString("yyyyMMdd'T'HHmmss'Z'", [Globalization.CultureInfo]::InvariantCulture)
  $day = $now.ToString('yyyyMMdd', [Globalization.CultureInfo]::InvariantCulture)
  $scope = "$day/$Region/s3/aws4_request"
  $payloadHash = Get-Sha256Hex ([byte[]]@())
  $headers = [ordered]@{ 'host' = $hostName; 'x-amz-content-sha256' = $payloadHash; 'x-amz-date' = $amzDate }
  if ($credentials.Token) { $headers['x-amz-security-token'] = $credentials.Token }
  $canonicalHeaders = -join ($headers.Keys | ForEach-Object { "${_}:$($headers[$_])`n" })
  $signedHeaders = ($headers.Keys -join ';')
  $canonicalRequest = "GET`n$path`n`n$canonicalHeaders`n$signedHeaders`n$payloadHash"
  $stringToSign = "AWS4-HMAC-SHA256`n$amzDate`n$scope`n" + (Get-Sha256Hex ([System.Text.Encoding]::UTF8.GetBytes($canonicalRequest)))
  $signingKey = Get-HmacSha256 ([System.Text.Encoding]::UTF8.GetBytes('AWS4' + $credentials.Secret)) $day
  foreach ($part in @($Region, 's3', 'aws4_request')) { $signingKey = Get-HmacSha256 $signingKey $part }
  $signature = -join ((Get-HmacSha256 $signingKey $stringToSign) | ForEach-Object { $_.ToString('x2') })

  $request = [System.Net.HttpWebRequest]::Create("https://$hostName$path")
  $request.Method = 'GET'
  $request.Timeout = 900000
  $request.ReadWriteTimeout = 900000
  if ($AgentProxyUrl) { $request.Proxy = New-Object System.Net.WebProxy($AgentProxyUrl) }
  foreach ($name in @('x-amz-content-sha256', 'x-amz-date', 'x-amz-security-token')) {
    if ($headers.Contains($name)) { $request.Headers.Add($name, $headers[$name]) }
  }
  $request.Headers.Add('Authorization', "AWS4-HMAC-SHA256 Credential=$($credentials.KeyId)/$scope, SignedHeaders=$signedHeaders, Signature=$signature")
  try {
    $response = $request.GetResponse()
  } catch {
    # PowerShell wraps what a .NET method throws: the WebException may be inside.
    $exception = if ($_.Exception -is [System.Net.WebException]) { $_.Exception } else { $_.Exception.InnerException }
    $failed = if ($exception -is [System.Net.WebException]) { $exception.Response } else { $null }
    if (-not $failed) { throw "could not reach S3 at ${hostName}: $($_.Exception.Message)" }
    $code = ''
    try {
      $body = (New-Object System.IO.StreamReader($failed.GetResponseStream())).ReadToEnd()
      if ($body -match '<Code>([A-Za-z0-9]+)</Code>') { $code = " $($Matches[1])" }
    } finally { $failed.Close() }
    throw "S3 answered $([int] $failed.StatusCode)$code for s3://$bucket/$key (signed with $($credentials.Source))"
  }
  try {
    $output = [System.IO.File]::Create($File)
    try { $response.GetResponseStream().CopyTo($output) } finally { $output.Dispose() }
  } finally { $response.Close() }
}
