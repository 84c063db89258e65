# Installs, upgrades, verifies or uninstalls the host security agent on Windows (cdk-agent-fleet).
#
# This file is the body of the aws:runPowerShellScript step of an AgentInstallDocument. At synth
# the construct puts a header of settings before it: $AgentAction, $AgentMode, $AgentTagKey and
# $AgentProxyUrl (document parameters SSM checked against allowedValues / allowedPattern), the
# service check timing, and $AgentPackages, the pinned MSI packages by key (MSI_X86_64, MSI_ARM64),
# all validated at synth.
#
# The last line of its output is one JSON object: action, outcome, version, imdsVersion, tag.
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$Imds = 'http://169.254.169.254'
$Script:ImdsVersion = 'none'
$Script:ImdsToken = ''
$Script:TagState = 'unknown'
$Script:PackageVersion = ''
$Script:WorkDir = $null

function Write-Log([string] $Message) { [Console]::Error.WriteLine($Message) }

function Finish([string] $Outcome, [int] $ExitCode) {
  if ($Script:WorkDir -and (Test-Path -LiteralPath $Script:WorkDir)) {
    Remove-Item -LiteralPath $Script:WorkDir -Recurse -Force -ErrorAction SilentlyContinue
  }
  $result = [ordered]@{
    action = $AgentAction; outcome = $Outcome; version = $Script:PackageVersion
    imdsVersion = $Script:ImdsVersion; tag = $Script:TagState
  }
  Write-Output ($result | ConvertTo-Json -Compress)
  exit $ExitCode
}

# The instance metadata service is never reached through a proxy. HttpWebRequest works the
# same in Windows PowerShell 5.1 (what SSM runs) and PowerShell 7.
function Invoke-Imds([string] $Path, [string] $Method = 'GET', [hashtable] $Headers = @{}) {
  $request = [System.Net.HttpWebRequest]::Create("$Imds$Path")
  $request.Method = $Method
  $request.Proxy = $null
  $request.Timeout = 5000
  foreach ($name in $Headers.Keys) { $request.Headers.Add($name, $Headers[$name]) }
  try {
    $response = $request.GetResponse()
    try {
      $reader = New-Object System.IO.StreamReader($response.GetResponseStream())
      return @{ Status = [int] $response.StatusCode; Body = $reader.ReadToEnd() }
    } finally { $response.Close() }
  } catch [System.Net.WebException] {
    if ($_.Exception.Response) { return @{ Status = [int] $_.Exception.Response.StatusCode; Body = '' } }
    return @{ Status = 0; Body = '' }
  } catch {
    $inner = $_.Exception.InnerException
    if ($inner -is [System.Net.WebException] -and $inner.Response) { return @{ Status = [int] $inner.Response.StatusCode; Body = '' } }
    return @{ Status = 0; Body = '' }
  }
}

# IMDSv2 first; IMDSv1 only when the token request fails and the instance still answers v1.
function Connect-Imds {
  $token = Invoke-Imds '/latest/api/token' 'PUT' @{ 'X-aws-ec2-metadata-token-ttl-seconds' = '300' }
  if ($token.Status -eq 200 -and $token.Body) {
    $Script:ImdsToken = $token.Body
    $Script:ImdsVersion = 'v2'
    return $true
  }
  if ((Invoke-Imds '/latest/meta-data/instance-id').Status -eq 200) {
    $Script:ImdsVersion = 'v1'
    Write-Log 'IMDSv2 token request failed; used IMDSv1, which this instance still allows. Require IMDSv2 (HttpTokens=required).'
    return $true
  }
  return $false
}

function Get-ImdsPath([string] $Path) {
  $headers = @{}
  if ($Script:ImdsVersion -eq 'v2') { $headers['X-aws-ec2-metadata-token'] = $Script:ImdsToken }
  return Invoke-Imds $Path 'GET' $headers
}

# Sets TagState to absent, true, false or misconfigured; false when the tag cannot be read.
function Read-Tag {
  $response = Get-ImdsPath "/latest/meta-data/tags/instance/$AgentTagKey"
  switch ($response.Status) {
    200 {
      $value = $response.Body
      if ($value -ceq 'true' -or $value -ceq 'false') { $Script:TagState = $value }
      else {
        $Script:TagState = 'misconfigured'
        Write-Log "tag $AgentTagKey has the value '$value'; only true and false mean something"
      }
      return $true
    }
    404 {
      $Script:TagState = 'absent'
      if ((Get-ImdsPath '/latest/meta-data/tags/instance').Status -eq 404) {
        Write-Log 'no instance tags in the metadata service: either the instance has none, or metadata tags are off (InstanceMetadataTags=enabled), which hides exclusion tags'
      }
      return $true
    }
    default { return $false }
  }
}

# What the tag means for this run: proceed, excluded or not-targeted (DESIGN.md, "Tag semantics").
function Get-Decision {
  if ($AgentAction -eq 'Uninstall') { return 'proceed' }
  if ($AgentMode -eq 'ALL_INSTANCES') {
    if ($Script:TagState -eq 'false') { return 'excluded' }
    return 'proceed'
  }
  if ($Script:TagState -eq 'true') { return 'proceed' }
  return 'not-targeted'
}

function Get-Architecture {
  $arch = $env:PROCESSOR_ARCHITEW6432
  if (-not $arch) { $arch = $env:PROCESSOR_ARCHITECTURE }
  switch ($arch) {
    'AMD64' { return 'X86_64' }
    'ARM64' { return 'ARM64' }
    default { return $null }
  }
}

# The installed product (DisplayName = the package name) from the uninstall registry keys.
function Get-InstalledProduct([string] $Name) {
  $roots = @(
    'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*',
    'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\*'
  )
  foreach ($root in $roots) {
    $product = Get-ItemProperty -Path $root -ErrorAction SilentlyContinue |
      Where-Object { $_.PSObject.Properties['DisplayName'] -and $_.DisplayName -eq $Name } |
      Select-Object -First 1
    if ($product) { return $product }
  }
  return $null
}

# 1.2.3 matches 1.2.3 and 1.2.3.0, not 1.2.30.
function Test-VersionMatch([string] $Installed, [string] $Wanted) {
  return ($Installed -eq $Wanted) -or ($Installed -like "$Wanted.*") -or ($Installed -like "$Wanted-*")
}

function Invoke-Msiexec([string[]] $Arguments) {
  $process = Start-Process -FilePath 'msiexec.exe' -ArgumentList $Arguments -Wait -PassThru -WindowStyle Hidden
  # 3010: success, a reboot is pending.
  return ($process.ExitCode -eq 0 -or $process.ExitCode -eq 3010)
}

function Install-Msi([string] $File) {
  $log = Join-Path $Script:WorkDir 'msiexec.log'
  return Invoke-Msiexec @('/i', "`"$File`"", '/qn', '/norestart', '/l*v', "`"$log`"")
}

function Uninstall-Product($Product) {
  return Invoke-Msiexec @('/x', $Product.PSChildName, '/qn', '/norestart')
}

# The service must be running on two checks in a row: a crash right after start is a failure.
function Test-ServiceUp([string] $Name) {
  try { Set-Service -Name $Name -StartupType Automatic } catch { Write-Log "could not set $Name to start automatically" }
  try { Restart-Service -Name $Name -Force } catch { Write-Log "could not restart ${Name}: $($_.Exception.Message)" }
  $running = 0
  for ($attempt = 1; $attempt -le $AgentServiceCheckAttempts; $attempt++) {
    $service = Get-Service -Name $Name -ErrorAction SilentlyContinue
    if ($service -and $service.Status -eq 'Running') {
      $running++
      if ($running -ge 2) { return $true }
    } else { $running = 0 }
    Start-Sleep -Seconds $AgentServiceCheckIntervalSeconds
  }
  return $false
}

function Get-Package([hashtable] $Package, [string] $File) {
  $source = $Package.Source
  if ($source.StartsWith('s3://')) {
    $rest = $source.Substring(5)
    $bucket = $rest.Substring(0, $rest.IndexOf('/'))
    $key = $rest.Substring($rest.IndexOf('/') + 1)
    if (Get-Command Read-S3Object -ErrorAction SilentlyContinue) {
      Read-S3Object -BucketName $bucket -Key $key -File $File -Region $Package.Region | Out-Null
    } elseif (Get-Command aws -ErrorAction SilentlyContinue) {
      & aws s3 cp --only-show-errors --region $Package.Region $source $File
      if ($LASTEXITCODE -ne 0) { throw "aws s3 cp exited with $LASTEXITCODE" }
    } else {
      throw 'AWS Tools for PowerShell or the AWS CLI is needed to download from S3'
    }
  } elseif ($source.StartsWith('https://')) {
    [Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
    $arguments = @{ Uri = $source; OutFile = $File; UseBasicParsing = $true; TimeoutSec = 900 }
    if ($AgentProxyUrl) { $arguments['Proxy'] = $AgentProxyUrl }
    Invoke-WebRequest @arguments
  } else {
    throw "unsupported package source $source"
  }
}

function Invoke-Rollback([string] $Reason, [hashtable] $Package, [string] $StateDir, $Previous) {
  Write-Log "$Reason; rolling back"
  if (-not $Previous) {
    $product = Get-InstalledProduct $Package.Name
    if ($product -and -not (Uninstall-Product $product)) { Write-Log "could not remove the failed install of $($Package.Name)" }
    Finish 'rolled-back' 1
  }
  $kept = Join-Path $StateDir 'last-good.msi'
  $keptVersionFile = Join-Path $StateDir 'last-good.version'
  $keptShaFile = Join-Path $StateDir 'last-good.sha256'
  if (-not ((Test-Path -LiteralPath $kept) -and (Test-Path -LiteralPath $keptVersionFile) -and (Test-Path -LiteralPath $keptShaFile))) {
    Write-Log "no copy of the previous version ($($Previous.DisplayVersion)) was kept; left as it is"
    Finish 'failed' 1
  }
  $keptVersion = (Get-Content -LiteralPath $keptVersionFile -Raw).Trim()
  if (-not (Test-VersionMatch $Previous.DisplayVersion $keptVersion)) {
    Write-Log "no copy of the previous version ($($Previous.DisplayVersion)) was kept; left as it is"
    Finish 'failed' 1
  }
  $keptSha = (Get-Content -LiteralPath $keptShaFile -Raw).Trim()
  if ((Get-FileHash -LiteralPath $kept -Algorithm SHA256).Hash.ToLowerInvariant() -ne $keptSha) {
    Write-Log "the kept copy of $keptVersion does not match its recorded SHA-256; not reinstalling it"
    Finish 'rollback-failed' 1
  }
  if ((Install-Msi $kept) -and (Test-ServiceUp $Package.Service)) {
    $Script:PackageVersion = $keptVersion
    Finish 'rolled-back' 1
  }
  Finish 'rollback-failed' 1
}

function New-PrivateDirectory([string] $Path) {
  $directory = New-Item -ItemType Directory -Path $Path -Force
  # Only SYSTEM and Administrators: the kept package is reinstalled as SYSTEM.
  $acl = New-Object System.Security.AccessControl.DirectorySecurity
  $acl.SetAccessRuleProtection($true, $false)
  foreach ($sid in @('S-1-5-18', 'S-1-5-32-544')) {
    $identity = New-Object System.Security.Principal.SecurityIdentifier($sid)
    $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($identity, 'FullControl', 'ContainerInherit,ObjectInherit', 'None', 'Allow')
    $acl.AddAccessRule($rule)
  }
  Set-Acl -LiteralPath $directory.FullName -AclObject $acl
  return $directory.FullName
}

function Main {
  $Script:WorkDir = New-PrivateDirectory (Join-Path ([System.IO.Path]::GetTempPath()) ("agent-fleet-" + [guid]::NewGuid()))

  if (-not (Connect-Imds)) {
    Write-Log 'the instance metadata service did not answer'
    if ($AgentAction -ne 'Uninstall') { Finish 'imds-unavailable' 1 }
  } elseif (-not (Read-Tag)) {
    Write-Log "could not read tag $AgentTagKey from the instance metadata service"
    if ($AgentAction -ne 'Uninstall') { Finish 'imds-unavailable' 1 }
  }

  switch (Get-Decision) {
    'excluded' { Write-Log "excluded by tag $AgentTagKey=false"; Finish 'excluded' 0 }
    'not-targeted' { Write-Log "not targeted: mode $AgentMode only manages instances tagged $AgentTagKey=true"; Finish 'not-targeted' 0 }
  }

  $architecture = Get-Architecture
  $key = "MSI_$architecture"
  if (-not $architecture -or -not $AgentPackages.ContainsKey($key)) {
    Write-Log "the document has no MSI package for this CPU architecture"
    Finish 'unsupported-platform' 1
  }
  $package = $AgentPackages[$key]
  $Script:PackageVersion = $package.Version
  $stateDir = New-PrivateDirectory (Join-Path (Join-Path $env:ProgramData 'cdk-agent-fleet') $package.Service)
  $previous = Get-InstalledProduct $package.Name

  switch ($AgentAction) {
    'Install' {
      if ($previous -and (Test-VersionMatch $previous.DisplayVersion $package.Version)) { Finish 'already-installed' 0 }
      $file = Join-Path $Script:WorkDir 'agent.msi'
      try { Get-Package $package $file } catch { Write-Log "could not download the package: $($_.Exception.Message)"; Finish 'download-failed' 1 }
      $actual = (Get-FileHash -LiteralPath $file -Algorithm SHA256).Hash.ToLowerInvariant()
      if ($actual -ne $package.Sha256) {
        Write-Log "SHA-256 mismatch: expected $($package.Sha256), got $actual; nothing installed"
        Finish 'hash-mismatch' 1
      }
      if (-not (Install-Msi $file)) { Invoke-Rollback "msiexec could not install $($package.Version)" $package $stateDir $previous }
      if (-not (Test-ServiceUp $package.Service)) { Invoke-Rollback "service $($package.Service) did not come up" $package $stateDir $previous }
      Copy-Item -LiteralPath $file -Destination (Join-Path $stateDir 'last-good.msi') -Force
      Set-Content -LiteralPath (Join-Path $stateDir 'last-good.version') -Value $package.Version -NoNewline
      Set-Content -LiteralPath (Join-Path $stateDir 'last-good.sha256') -Value $package.Sha256 -NoNewline
      if ($previous) { Finish 'upgraded' 0 }
      Finish 'installed' 0
    }
    'Uninstall' {
      if (-not $previous) { Finish 'not-installed' 0 }
      $Script:PackageVersion = $previous.DisplayVersion
      try { Stop-Service -Name $package.Service -Force } catch { Write-Log "could not stop $($package.Service)" }
      if (-not (Uninstall-Product $previous)) { Finish 'failed' 1 }
      Remove-Item -LiteralPath $stateDir -Recurse -Force -ErrorAction SilentlyContinue
      Finish 'uninstalled' 0
    }
    'Verify' {
      if (-not $previous) { Finish 'not-installed' 1 }
      if (-not (Test-VersionMatch $previous.DisplayVersion $package.Version)) {
        Write-Log "installed $($previous.DisplayVersion), expected $($package.Version)"
        Finish 'wrong-version' 1
      }
      $service = Get-Service -Name $package.Service -ErrorAction SilentlyContinue
      if (-not $service -or $service.Status -ne 'Running') { Finish 'service-down' 1 }
      Finish 'compliant' 0
    }
    default { Finish 'invalid-action' 1 }
  }
}

try {
  Main
} catch {
  Write-Log "unexpected failure: $($_.Exception.Message)"
  Finish 'failed' 1
}
